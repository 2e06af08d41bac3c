/*
 * pack_to_fd.c: packs a message straight into a file descriptor, computing
 * zlib's CRC-32 of the bytes on the way (pml_crc32). Saving a 100 MB model
 * this way needs no 100 MB buffer (whose first touch alone costs as much as
 * writing it to the disk's cache): protobuf-c hands large bytes fields to
 * append() whole, and those are written from where they lie.
 */
#include "pml_proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { CHUNK = 1 << 20 };

struct fd_buffer {
    ProtobufCBuffer base;
    int fd;
    int error;
    uint32_t crc;
    size_t used;
    uint8_t chunk[CHUNK];
};

static void write_all(struct fd_buffer *b, const uint8_t *p, size_t n) {
    while (n > 0 && !b->error) {
        ssize_t w = write(b->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            b->error = w < 0 ? errno : EIO;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void flush(struct fd_buffer *b) {
    write_all(b, b->chunk, b->used);
    b->used = 0;
}

static void append(ProtobufCBuffer *buffer, size_t len, const uint8_t *data) {
    struct fd_buffer *b = (struct fd_buffer *)buffer;
    if (b->error) return;
    b->crc = pml_crc32(b->crc, data, len);
    if (len >= CHUNK) {
        flush(b);
        write_all(b, data, len);
        return;
    }
    if (b->used + len > CHUNK) flush(b);
    memcpy(b->chunk + b->used, data, len);
    b->used += len;
}

int pml_pack_to_fd(const ProtobufCMessage *message, int fd, uint32_t *crc) {
    struct fd_buffer *b = malloc(sizeof *b);
    if (!b) return ENOMEM;
    b->base.append = append;
    b->fd = fd;
    b->error = 0;
    b->crc = 0;
    b->used = 0;
    protobuf_c_message_pack_to_buffer(message, &b->base);
    flush(b);
    *crc = b->crc;
    int error = b->error;
    free(b);
    return error;
}
