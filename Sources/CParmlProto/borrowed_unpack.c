/*
 * borrowed_unpack.c: protobuf-c unpacking that leaves bytes fields in the
 * input (pml_proto.h says why). protobuf-c copies every bytes field; this
 * hands it a rewritten copy of the input in which each bytes field of 16
 * bytes or more is a 16-byte placeholder (an index into a table of where the
 * real bytes lie), then points the unpacked fields at the input.
 *
 * The rewrite walks the wire format with the message descriptors, exactly as
 * protobuf-c reads it (tags, wire types, length prefixes). Anything it does
 * not understand (malformed input, nesting deeper than MAX_DEPTH) makes it
 * give up, and the caller unpacks the original bytes the ordinary way: the
 * same result, the same errors, only slower. Lengths keep the width of their
 * original varint (protobuf-c reads padded varints), so the rewrite is one
 * pass and never longer than the input.
 */
#include "pml_proto.h"

#include <stdlib.h>
#include <string.h>

enum { PLACEHOLDER = 16, MAX_DEPTH = 32 };

/* The second half of every placeholder. Every bytes field the rewrite
   recognises is at least 16 bytes long before it and exactly a placeholder
   after, so an unpacked field of 16 bytes is one (the mark is a second check). */
static const uint8_t MARK[8] = {'p', 'm', 'l', 'b', 'o', 'r', 'r', 'w'};

struct span {
    size_t offset, len;
};

struct rewrite {
    const uint8_t *in;
    uint8_t *out;
    size_t used; /* bytes written to out (never more than read from in) */
    struct span *spans;
    size_t n_spans, cap_spans;
};

struct patch {
    ProtobufCBinaryData *field;
    uint8_t *placeholder; /* protobuf-c's copy: restored before freeing */
};

struct pml_unpacked {
    ProtobufCMessage *message;
    struct patch *patches;
    size_t n_patches, cap_patches;
};

/* As protobuf-c's parse_tag_and_wiretype: 0 on a bad tag. */
static size_t read_tag(const uint8_t *p, size_t len, uint32_t *tag, unsigned *wire) {
    size_t max = len > 5 ? 5 : len;
    if (max == 0 || (p[0] & 0xf8) == 0) return 0;
    uint32_t t = (p[0] & 0x7fu) >> 3;
    *wire = p[0] & 7u;
    if ((p[0] & 0x80) == 0) {
        *tag = t;
        return 1;
    }
    unsigned shift = 4;
    for (size_t i = 1; i < max; i++) {
        t |= (uint32_t)(p[i] & 0x7fu) << shift;
        if ((p[i] & 0x80) == 0) {
            *tag = t;
            return i + 1;
        }
        shift += 7;
    }
    return 0;
}

/* As protobuf-c's scan_length_prefixed_data: the prefix's width, 0 when bad. */
static size_t read_length(const uint8_t *p, size_t len, size_t *value) {
    size_t max = len < 5 ? len : 5, v = 0;
    for (size_t i = 0; i < max; i++) {
        v |= (size_t)(p[i] & 0x7f) << (7 * i);
        if ((p[i] & 0x80) == 0) {
            if (v > 0x7fffffff || i + 1 + v > len) return 0;
            *value = v;
            return i + 1;
        }
    }
    return 0;
}

/* v in exactly `width` varint bytes (v < 2^(7 width)). */
static void write_length(uint8_t *p, size_t v, size_t width) {
    for (size_t i = 0; i + 1 < width; i++, v >>= 7) p[i] = (uint8_t)(0x80 | (v & 0x7f));
    p[width - 1] = (uint8_t)v;
}

/* A growing array `items` of *cap, holding n, with room for one more:
   itself or a bigger copy; NULL (items untouched) when out of memory. */
static void *reserve(void *items, size_t *cap, size_t n, size_t size) {
    if (n < *cap) return items;
    size_t c = *cap ? 2 * *cap : 16;
    void *p = realloc(items, c * size);
    if (p) *cap = c;
    return p;
}

static int add_span(struct rewrite *r, size_t offset, size_t len) {
    struct span *s = reserve(r->spans, &r->cap_spans, r->n_spans, sizeof *s);
    if (!s) return 0;
    r->spans = s;
    r->spans[r->n_spans++] = (struct span){offset, len};
    return 1;
}

/* Rewrites the message of `desc` at in[at, end) to out; 0 to give up. */
static int rewrite_message(struct rewrite *r, const ProtobufCMessageDescriptor *desc, size_t at, size_t end, int depth) {
    if (depth > MAX_DEPTH) return 0;
    while (at < end) {
        const uint8_t *p = r->in + at;
        size_t rem = end - at;
        uint32_t tag;
        unsigned wire;
        size_t used = read_tag(p, rem, &tag, &wire), n;
        if (used == 0) return 0;
        switch (wire) {
        case PROTOBUF_C_WIRE_TYPE_VARINT: {
            size_t i, max = rem - used < 10 ? rem - used : 10;
            for (i = 0; i < max && (p[used + i] & 0x80); i++) {}
            if (i == max) return 0;
            n = used + i + 1;
            break;
        }
        case PROTOBUF_C_WIRE_TYPE_64BIT: n = used + 8; break;
        case PROTOBUF_C_WIRE_TYPE_32BIT: n = used + 4; break;
        case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED: {
            size_t len, width = read_length(p + used, rem - used, &len);
            if (width == 0) return 0;
            const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(desc, tag);
            size_t payload = at + used + width;
            if (f && f->type == PROTOBUF_C_TYPE_BYTES && len >= PLACEHOLDER) {
                memcpy(r->out + r->used, p, used);
                write_length(r->out + r->used + used, PLACEHOLDER, width);
                uint8_t *ph = r->out + r->used + used + width;
                uint64_t index = r->n_spans;
                memcpy(ph, &index, 8);
                memcpy(ph + 8, MARK, 8);
                r->used += used + width + PLACEHOLDER;
                if (!add_span(r, payload, len)) return 0;
                at = payload + len;
                continue;
            }
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                size_t head = r->used;
                memcpy(r->out + head, p, used);
                r->used += used + width;
                if (!rewrite_message(r, f->descriptor, payload, payload + len, depth + 1)) return 0;
                write_length(r->out + head + used, r->used - head - used - width, width);
                at = payload + len;
                continue;
            }
            n = used + width + len;
            break;
        }
        default: return 0; /* groups: protobuf-c refuses them */
        }
        if (n > rem) return 0;
        memcpy(r->out + r->used, p, n);
        r->used += n;
        at += n;
    }
    return 1;
}

static int add_patch(struct pml_unpacked *u, ProtobufCBinaryData *field, uint8_t *placeholder) {
    struct patch *p = reserve(u->patches, &u->cap_patches, u->n_patches, sizeof *p);
    if (!p) return 0;
    u->patches = p;
    u->patches[u->n_patches++] = (struct patch){field, placeholder};
    return 1;
}

static int point_at_input(struct pml_unpacked *u, const struct rewrite *r, ProtobufCBinaryData *b) {
    if (b->len != PLACEHOLDER || !b->data || memcmp(b->data + 8, MARK, 8) != 0) return 1;
    uint64_t index;
    memcpy(&index, b->data, 8);
    if (index >= r->n_spans || !add_patch(u, b, b->data)) return 0;
    b->data = (uint8_t *)r->in + r->spans[index].offset;
    b->len = r->spans[index].len;
    return 1;
}

/* Points every placeholder in `m` at the input; 0 on a bad index or no memory. */
static int patch_message(struct pml_unpacked *u, const struct rewrite *r, ProtobufCMessage *m) {
    const ProtobufCMessageDescriptor *desc = m->descriptor;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (f->type != PROTOBUF_C_TYPE_BYTES && f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        char *at = (char *)m + f->offset;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(uint32_t *)((char *)m + f->quantifier_offset) != f->id) continue;
        size_t count = 1;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            count = *(size_t *)((char *)m + f->quantifier_offset);
            at = *(char **)at;
        }
        for (size_t k = 0; k < count; k++) {
            if (f->type == PROTOBUF_C_TYPE_BYTES) {
                if (!point_at_input(u, r, (ProtobufCBinaryData *)at + k)) return 0;
            } else {
                ProtobufCMessage *sub = ((ProtobufCMessage **)at)[k];
                if (sub && !patch_message(u, r, sub)) return 0;
            }
        }
    }
    return 1;
}

pml_unpacked *pml_unpack_borrowing(const ProtobufCMessageDescriptor *descriptor, const uint8_t *data, size_t len,
                                   size_t budget, int *over_budget) {
    if (over_budget) *over_budget = 0;
    pml_unpacked *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    struct rewrite r = {data, malloc(len ? len : 1), 0, NULL, 0, 0};
    if (r.out && rewrite_message(&r, descriptor, 0, len, 0)) {
        u->message = pml_unpack_bounded(descriptor, r.out, r.used, budget, over_budget);
        if (u->message && !patch_message(u, &r, u->message)) {
            pml_unpacked_free(u);
            u = NULL;
        }
    } else {
        u->message = pml_unpack_bounded(descriptor, data, len, budget, over_budget);
    }
    free(r.out);
    free(r.spans);
    if (u && !u->message) {
        pml_unpacked_free(u);
        u = NULL;
    }
    return u;
}

ProtobufCMessage *pml_unpacked_message(const pml_unpacked *u) { return u->message; }

void pml_unpacked_free(pml_unpacked *u) {
    if (!u) return;
    /* Fields that point into the input get their own memory back, which protobuf-c frees. */
    for (size_t i = 0; i < u->n_patches; i++) {
        u->patches[i].field->data = u->patches[i].placeholder;
        u->patches[i].field->len = PLACEHOLDER;
    }
    if (u->message) protobuf_c_message_free_unpacked(u->message, NULL);
    free(u->patches);
    free(u);
}
