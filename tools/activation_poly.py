#!/usr/bin/env python3
"""Derives the polynomial coefficients of parml's vectorisable tanh and
sigmoid (Sources/_CParmlKernels/kernels.c) and checks them.

- exp(r) on |r| <= ln2/2 (after r = x - n ln2): degree 6, fitted by weighted
  least squares on Chebyshev nodes to the relative error.
- tanh(x) on |x| < 0.625: x + x^3 q(x^2), q of degree 5, fitted the same way
  to (tanh(x) - x) / x^3, so the relative error of the sum stays small.

Prints the coefficients as C float literals (what kernels.c holds) and the
largest relative error of each fit in double precision.
usage: python3 tools/activation_poly.py
"""
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

    print("exp(r), r in [-ln2/2, ln2/2], c0..c6:")
    print("  " + ", ".join(f"{float(np.float32(c)):.9e}f" for c in e))
    print(f"  largest relative error (double): {err_e:.2e}")
    print("tanh(x) = x + x^3 q(x^2), |x| < 0.625, q0..q5:")
    print("  " + ", ".join(f"{float(np.float32(c)):.9e}f" for c in q))
    print(f"  largest relative error (double): {err_t:.2e}")
    assert err_e < 1e-8 and err_t < 1e-8


if __name__ == "__main__":
    main()
