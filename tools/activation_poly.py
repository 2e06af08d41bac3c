#!/usr/bin/env python3
"""Derives the polynomial coefficients of parml's vectorisable tanh,
sigmoid and GELU (Sources/_CParmlKernels/kernels.c) and checks them.

- exp(r) on |r| <= ln2/2 (after r = x - n ln2): degree 6, fitted by weighted
  least squares on Chebyshev nodes to the relative error.
- tanh(x) on |x| < 0.625: x + x^3 q(x^2), q of degree 5, fitted the same way
  to (tanh(x) - x) / x^3, so the relative error of the sum stays small.
- GELU's Phi(x) = (1 + erf(z)) / 2, z = x / sqrt(2): erf(z) = z p(z^2) on
  z < 0.5 (p of degree 5); above, erfc(z) = exp(-z^2) erfcx(z), erfcx a
  polynomial in z - 1.5 on [0.5, 2.5] (degree 12) and in 1/z on [2.5, 9.4]
  (degree 8), each fitted to its relative error. (Variables that float
  computes exactly or nearly so: a fit in 1/(1+z) over the whole range
  lost 8 ulp to the rounding of 1/(1+z).)

Prints the coefficients as C float literals (what kernels.c holds) and the
largest relative error of each fit in double precision.
usage: python3 tools/activation_poly.py
"""
import math

import numpy as np

LN2 = np.log(2.0)


def cheb_nodes(lo, hi, n):
    k = np.arange(n)
    return 0.5 * (lo + hi) + 0.5 * (hi - lo) * np.cos((2 * k + 1) * np.pi / (2 * n))


def fit(x, target, degree, weight):
    a = np.vander(x, degree + 1, increasing=True) * weight[:, None]
    c, *_ = np.linalg.lstsq(a, target * weight, rcond=None)
    return c


def main():
    r = cheb_nodes(-LN2 / 2, LN2 / 2, 4000)
    e = fit(r, np.exp(r), 6, 1 / np.exp(r))
    rr = np.linspace(-LN2 / 2, LN2 / 2, 200001)
    err_e = np.max(np.abs(np.polyval(e[::-1], rr) / np.exp(rr) - 1))

    x = cheb_nodes(1e-3, 0.625, 4000)
    u = x * x
    q = fit(u, (np.tanh(x) - x) / x**3, 5, x**3 / np.tanh(x))
    xx = np.linspace(1e-6, 0.625, 200001)
    approx = xx + xx**3 * np.polyval(q[::-1], xx * xx)
    err_t = np.max(np.abs(approx / np.tanh(xx) - 1))

    erf = np.vectorize(math.erf)
    erfc = np.vectorize(math.erfc)
    z = cheb_nodes(1e-4, 0.5, 3000)
    pe = fit(z * z, erf(z) / z, 5, np.ones_like(z))
    zz = np.linspace(1e-4, 0.5, 100001)
    err_p = np.max(np.abs(zz * np.polyval(pe[::-1], zz * zz) / erf(zz) - 1))
    pieces = []
    for lo, hi, var, degree in ((0.5, 2.5, lambda v: v - 1.5, 12), (2.5, 9.4, lambda v: 1 / v, 8)):
        z = cheb_nodes(lo, hi, 4000)
        erfcx = np.exp(z * z) * erfc(z)
        c = fit(var(z), erfcx, degree, 1 / erfcx)
        zz = np.linspace(lo, hi, 200001)
        err = np.max(np.abs(np.polyval(c[::-1], var(zz)) / (np.exp(zz * zz) * erfc(zz)) - 1))
        pieces.append((lo, hi, c, err))

    print("exp(r), r in [-ln2/2, ln2/2], c0..c6:")
    print("  " + ", ".join(f"{float(np.float32(c)):.9e}f" for c in e))
    print(f"  largest relative error (double): {err_e:.2e}")
    print("tanh(x) = x + x^3 q(x^2), |x| < 0.625, q0..q5:")
    print("  " + ", ".join(f"{float(np.float32(c)):.9e}f" for c in q))
    print(f"  largest relative error (double): {err_t:.2e}")
    print("erf(z) = z p(z^2), z < 0.5, p0..p5:")
    print("  " + ", ".join(f"{float(np.float32(c)):.9e}f" for c in pe))
    print(f"  largest relative error (double): {err_p:.2e}")
    for (lo, hi, c, err), var in zip(pieces, ("z - 1.5", "1/z")):
        print(f"erfcx(z) on [{lo}, {hi}], a polynomial in {var}, c0..c{len(c) - 1}:")
        print("  " + ", ".join(f"{float(np.float32(k)):.9e}f" for k in c))
        print(f"  largest relative error (double): {err:.2e}")
    assert max([err_e, err_t, err_p] + [p[3] for p in pieces]) < 1e-8


if __name__ == "__main__":
    main()
