/*
 * bounded_unpack.c: protobuf-c unpacking with an allocation budget
 * (pml_proto.h says why). The allocator counts every allocation against the
 * budget and refuses the one that would exceed it; protobuf-c then fails the
 * unpack cleanly and frees what it had built.
 */
#include "pml_proto.h"

#include <stdlib.h>

struct budget {
    size_t left;
    int exceeded;
};

static void *budget_alloc(void *data, size_t size) {
    struct budget *b = data;
    if (size > b->left) {
        b->exceeded = 1;
        return NULL;
    }
    b->left -= size;
    return pml_alloc_bytes(size);
}

/* Freed memory is not given back to the budget: it bounds the total ever
   allocated, which is also an upper bound on the peak. */
static void budget_free(void *data, void *p) {
    (void)data;
    free(p);
}

ProtobufCMessage *pml_unpack_bounded(const ProtobufCMessageDescriptor *descriptor, const uint8_t *data, size_t len,
                                     size_t budget, int *over_budget) {
    struct budget b = {budget, 0};
    ProtobufCAllocator allocator = {budget_alloc, budget_free, &b};
    ProtobufCMessage *m = protobuf_c_message_unpack(descriptor, &allocator, len, data);
    if (over_budget) *over_budget = b.exceeded;
    return m;
}
