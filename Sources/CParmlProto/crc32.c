/*
 * crc32.c: zlib's CRC-32 folded with carry-less multiplies (PCLMULQDQ), as in
 * Intel's "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ".
 * zlib 1.2.13's table CRC runs at ~2 GB/s, a third of a 100 MB checkpoint's
 * load; this runs at memory speed. Same polynomial and bit order, so files
 * stay what zlib.crc32 computes. CPUs without PCLMULQDQ get zlib's.
 *
 * The constants and the lane arithmetic are derived, and checked bit for bit
 * against zlib, by tools/crc32_fold_constants.py.
 */
#include "pml_proto.h"

#include <zlib.h>

/* zlib takes 32-bit lengths. */
static uint32_t zlib_crc(uint32_t crc, const uint8_t *p, size_t n) {
    uLong c = crc;
    while (n > 0) {
        size_t k = n > (1u << 30) ? (1u << 30) : n;
        c = crc32(c, p, (uInt)k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <cpuid.h>
#include <immintrin.h>

/* x^e mod P as 64-bit reflected operands; tools/crc32_fold_constants.py prints them. */
#define K64_HI 0x653d982200000000ull /* x^575: a lane's first half, 64 bytes ahead */
#define K64_LO 0xcad38e8f00000000ull /* x^511: its second half */
#define K16_HI 0x65673b4600000000ull /* x^191: 16 bytes ahead */
#define K16_LO 0x9ba54c6f00000000ull /* x^127 */

#define FOLD_ATTR __attribute__((target("pclmul,sse4.1")))

/* Lane x moved D bytes forward (k: the constants for D) and added to the lane there. */
FOLD_ATTR static inline __m128i fold(__m128i x, __m128i k, __m128i next) {
    __m128i hi = _mm_clmulepi64_si128(x, k, 0x00);
    __m128i lo = _mm_clmulepi64_si128(x, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(hi, lo), next);
}

/* n >= 64. Four independent lanes hide the multiplier's latency. */
FOLD_ATTR static uint32_t fold_crc(uint32_t crc, const uint8_t *p, size_t n) {
    const __m128i k64 = _mm_set_epi64x((long long)K64_LO, (long long)K64_HI);
    const __m128i k16 = _mm_set_epi64x((long long)K16_LO, (long long)K16_HI);
    __m128i x0 = _mm_loadu_si128((const __m128i *)p);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    /* The running state enters as the first 32 bits of the message. */
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)~crc));
    p += 64;
    n -= 64;
    for (; n >= 64; p += 64, n -= 64) {
        x0 = fold(x0, k64, _mm_loadu_si128((const __m128i *)p));
        x1 = fold(x1, k64, _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = fold(x2, k64, _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = fold(x3, k64, _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    __m128i x = fold(fold(fold(x0, k16, x1), k16, x2), k16, x3);
    for (; n >= 16; p += 16, n -= 16) x = fold(x, k16, _mm_loadu_si128((const __m128i *)p));
    /* The lane is congruent to everything so far; its CRC from a zero state
       (zlib's 0xFFFFFFFF) is the state after it. */
    uint8_t rest[16];
    _mm_storeu_si128((__m128i *)rest, x);
    return zlib_crc(zlib_crc(0xFFFFFFFFu, rest, 16), p, n);
}

/* Checked once (cpuid traps to the hypervisor in a VM). Relaxed atomics:
   threads that race to check all store the same answer. */
static int fold_supported(void) {
    static int state; /* 0: not checked, 1: no, 2: PCLMULQDQ and SSE4.1 */
    int s = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (s == 0) {
        unsigned a, b, c, d;
        s = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_PCLMUL) && (c & bit_SSE4_1) ? 2 : 1;
        __atomic_store_n(&state, s, __ATOMIC_RELAXED);
    }
    return s == 2;
}

uint32_t pml_crc32(uint32_t crc, const uint8_t *p, size_t n) {
    if (n >= 64 && fold_supported()) return fold_crc(crc, p, n);
    return zlib_crc(crc, p, n);
}
#else
uint32_t pml_crc32(uint32_t crc, const uint8_t *p, size_t n) { return zlib_crc(crc, p, n); }
#endif
