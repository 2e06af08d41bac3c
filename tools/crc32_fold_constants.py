#!/usr/bin/env python3
"""Folding constants for the PCLMULQDQ CRC-32 (Sources/CParmlProto/crc32.c).

The CRC is zlib's (gzip's): polynomial P = 0x104C11DB7, bits reflected. In
the reflected view a 128-bit lane loaded little-endian has integer bit k as
the coefficient of x^(127-k), and a 64-bit operand bit k as x^(63-k), so a
carry-less multiply of two 64-bit operands gives x * A * B in the 128-bit
view: every constant is one power of x lower than the distance it folds.

Folding lane A (halves H: integer bits 0..63, L: bits 64..127) forward by D
bytes onto the lane there is A * x^(8D) = H * x^(8D+64) + L * x^(8D), so

    clmul(H, x^(8D+63) mod P) ^ clmul(L, x^(8D-1) mod P)

Run it to print the constants (and check the scheme against zlib.crc32 with
a bit-level model of the C code): python3 tools/crc32_fold_constants.py
"""
import random
import zlib

P = 0x104C11DB7


def xpow_mod(e):
    """x^e mod P as an integer, bit j = coefficient of x^j."""
    r = 1
    for _ in range(e):
        r <<= 1
        if r & (1 << 32):
            r ^= P
    return r


def reflected64(r):
    """A polynomial of degree < 32 as a 64-bit reflected operand (bit k = x^(63-k))."""
    return sum(1 << (63 - j) for j in range(32) if r >> j & 1)


def constant(e):
    return reflected64(xpow_mod(e))


# (name, exponent): 4 lanes folded 64 bytes ahead; one lane folded 16 bytes ahead.
CONSTANTS = [("K64_HI", 8 * 64 + 63), ("K64_LO", 8 * 64 - 1), ("K16_HI", 8 * 16 + 63), ("K16_LO", 8 * 16 - 1)]


def clmul(a, b):
    r = 0
    while b:
        if b & 1:
            r ^= a
        a <<= 1
        b >>= 1
    return r


def fold(lane, hi, lo):
    return clmul(lane & (2**64 - 1), hi) ^ clmul(lane >> 64, lo)


def model_crc(crc, data):
    """What crc32.c computes, lane for lane (zlib's convention for crc)."""
    if len(data) < 64:
        return zlib.crc32(data, crc)
    k = {name: constant(e) for name, e in CONSTANTS}
    lanes = [int.from_bytes(data[16 * i:16 * i + 16], "little") for i in range(4)]
    lanes[0] ^= crc ^ 0xFFFFFFFF
    p = 64
    while len(data) - p >= 64:
        lanes = [fold(x, k["K64_HI"], k["K64_LO"]) ^ int.from_bytes(data[p + 16 * i:p + 16 * i + 16], "little")
                 for i, x in enumerate(lanes)]
        p += 64
    x = lanes[0]
    for y in lanes[1:]:
        x = fold(x, k["K16_HI"], k["K16_LO"]) ^ y
    while len(data) - p >= 16:
        x = fold(x, k["K16_HI"], k["K16_LO"]) ^ int.from_bytes(data[p:p + 16], "little")
        p += 16
    # The lane's remainder times x^32 is the CRC of its 16 bytes from a zero state.
    c = zlib.crc32(x.to_bytes(16, "little"), 0xFFFFFFFF)
    return zlib.crc32(data[p:], c)


def main():
    for name, e in CONSTANTS:
        print(f"#define {name} 0x{constant(e):016x}u /* x^{e} mod P */")
    rng = random.Random(1)
    for n in list(range(0, 300)) + [1000, 4096, 5003]:
        data = bytes(rng.randrange(256) for _ in range(n))
        seed = rng.randrange(2**32)
        assert model_crc(seed, data) == zlib.crc32(data, seed), n
    print("model agrees with zlib.crc32 on 303 lengths")


if __name__ == "__main__":
    main()
