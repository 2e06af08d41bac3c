#!/usr/bin/env python3
"""Writes a sharded dataset for parml_dataset_open_shards / parml.open_shards:
shard files and a manifest.txt (format: docs/data.md, "Streaming").

Sources (one of):
  --idx IMAGES LABELS     an IDX pair (MNIST, Fashion-MNIST; .gz or plain), kept uint8
  --npy X Y               two .npy files (memory-mapped, any dtype parml streams)
  --synthetic N           N random samples: uint8 inputs of --dims, labels in 0..--classes-1,
                          generated shard by shard (memory: one shard)

usage: python3 tools/make_shards.py OUT_DIR (--idx I L | --npy X Y | --synthetic N)
           [--rows-per-shard 10000] [--format npy|npz] [--dims 28 28] [--classes 10] [--seed 0]
           [--drop-cache]   (flush each shard and drop it from the page cache: a later
                             read then comes from disk, as for data that never fit in RAM)

Shards are numpy.save / numpy.savez (stored, not compressed: a stream reads
members in place) files x_00000.npy + y_00000.npy, or part_00000.npz. Each
shard line ends with the CRC-32 (zlib's) of its files, which a stream
verifies when it opens (--no-checksums leaves them out).
"""

from __future__ import annotations

import argparse
import gzip
import zlib
import os
import struct
from pathlib import Path

import numpy as np


def read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, kind, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or kind != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def crc32_of(path: Path) -> str:
    """zlib's CRC-32 of a whole file, as 8 hex digits (read in 16 MiB pieces)."""
    crc = 0
    with open(path, "rb") as f:
        while piece := f.read(1 << 24):
            crc = zlib.crc32(piece, crc)
    return f"{crc:08x}"


def write_shards(out: Path, parts, fmt: str, inputs_line: str, targets_line: str, drop: bool = False,
                 checksums: bool = True) -> int:
    """parts yields (x, y) per shard; writes them and the manifest last (a
    manifest only once every shard it names is complete). Returns the rows.
    With checksums each shard line ends with crc32= of its files."""
    out.mkdir(parents=True, exist_ok=True)
    lines = ["parml-shards 1", inputs_line, targets_line]
    total = 0
    for i, (x, y) in enumerate(parts):
        if fmt == "npz":
            name = f"part_{i:05d}.npz"
            np.savez(out / name, x=x, y=y)
            lines.append(f"shard {name} {len(x)}")
        else:
            np.save(out / f"x_{i:05d}.npy", x)
            np.save(out / f"y_{i:05d}.npy", y)
            lines.append(f"shard x_{i:05d}.npy y_{i:05d}.npy {len(x)}")
        if checksums:
            files = lines[-1].split()[1:-1]
            lines[-1] += " crc32=" + ",".join(crc32_of(out / name) for name in files)
        if drop:
            for name in lines[-1].split()[1:-2 if checksums else -1]:
                drop_cache(out / name)
        total += len(x)
    tmp = out / "manifest.txt.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out / "manifest.txt")
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--idx", nargs=2, metavar=("IMAGES", "LABELS"))
    src.add_argument("--npy", nargs=2, metavar=("X", "Y"))
    src.add_argument("--synthetic", type=int, metavar="N")
    ap.add_argument("--rows-per-shard", type=int, default=10000)
    ap.add_argument("--format", choices=("npy", "npz"), default="npy")
    ap.add_argument("--dims", type=int, nargs="+", default=[28, 28])
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--drop-cache", action="store_true")
    ap.add_argument("--no-checksums", action="store_true", help="leave the crc32= of each shard out of the manifest")
    a = ap.parse_args()
    step = a.rows_per_shard
    if step < 1:
        raise SystemExit("--rows-per-shard must be >= 1")

    if a.synthetic is not None:
        n = a.synthetic
        dims = tuple(a.dims)

        def parts():
            rng = np.random.default_rng(a.seed)
            for start in range(0, n, step):
                rows = min(step, n - start)
                y = rng.integers(0, a.classes, rows, dtype=np.uint8)
                # Class-dependent means, so a model can learn something.
                x = rng.integers(0, 128, (rows, *dims), dtype=np.uint8)
                x += (y * (127 // max(a.classes - 1, 1))).astype(np.uint8).reshape((rows,) + (1,) * len(dims))
                yield x, y

        inputs_line = "inputs uint8 " + " ".join(map(str, dims))
        targets_line = "targets uint8"
    else:
        if a.idx:
            x, y = read_idx(a.idx[0]), read_idx(a.idx[1])
        else:
            x, y = np.load(a.npy[0], mmap_mode="r"), np.load(a.npy[1], mmap_mode="r")
        if len(x) != len(y):
            raise SystemExit(f"{len(x)} inputs but {len(y)} targets")

        def parts():
            for start in range(0, len(x), step):
                yield np.ascontiguousarray(x[start : start + step]), np.ascontiguousarray(y[start : start + step])

        inputs_line = f"inputs {x.dtype.name} " + " ".join(map(str, x.shape[1:]))
        targets_line = f"targets {y.dtype.name}" + "".join(f" {d}" for d in y.shape[1:])
    total = write_shards(Path(a.out), parts(), a.format, inputs_line, targets_line, a.drop_cache, not a.no_checksums)
    print(f"{a.out}: {total} rows in shards of {step} ({a.format}), manifest {a.out}/manifest.txt")


if __name__ == "__main__":
    main()
