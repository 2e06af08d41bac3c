"""CRC-32 checksums in a shard manifest (tools/make_shards.py writes them;
docs/data.md "Streaming"): a stream verifies the shards it reads when it
opens, a mismatch is a FormatError naming the shard with nothing left open,
and manifests without checksums keep working."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import parml

from test_streaming import F, N, data, mapped_paths, refused, trainer, write


def flip_last_byte(path):
    b = bytearray(path.read_bytes())
    b[-1] ^= 0x01  # a data byte: the header still reads, only the checksum can tell
    path.write_bytes(bytes(b))


def test_the_manifest_states_zlib_crc32_of_each_file(tmp_path):
    x, y = data()
    write(tmp_path, x, y, rows=100)
    lines = [l for l in (tmp_path / "manifest.txt").read_text().splitlines() if l.startswith("shard")]
    assert len(lines) == 3
    for line in lines:
        words = line.split()
        crcs = words[-1].removeprefix("crc32=").split(",")
        assert crcs == [f"{zlib.crc32((tmp_path / name).read_bytes()):08x}" for name in words[1:3]]
    with parml.open_shards(tmp_path) as s, trainer() as t:
        assert len(s) == N
        t.fit(s, epochs=1, batch_size=32, verbose=False)


@pytest.mark.parametrize("fmt, victim", [("npy", "x_00001.npy"), ("npy", "y_00002.npy"), ("npz", "part_00001.npz")])
def test_a_corrupt_shard_is_refused_naming_it(tmp_path, fmt, victim):
    x, y = data()
    write(tmp_path, x, y, rows=100, fmt=fmt)
    flip_last_byte(tmp_path / victim)
    shard = victim.split("_")[1][:5].lstrip("0") or "0"
    refused(tmp_path, parml.FormatError, rf"shard {shard} \(.*{victim}\) has CRC-32 [0-9a-f]{{8}} but the manifest says [0-9a-f]{{8}}")
    # A rank that does not read that shard opens its own and trains.
    other = 0 if shard != "0" else 1
    with parml.open_shards(tmp_path, rank=other, ranks=3) as s:
        assert len(s) == 100
    assert str(tmp_path / victim) not in mapped_paths()


def test_manifests_without_checksums_keep_working(tmp_path):
    x, y = data()
    write(tmp_path, x, y, rows=100)
    m = tmp_path / "manifest.txt"
    m.write_text("\n".join(l.rsplit(" crc32=", 1)[0] for l in m.read_text().splitlines()) + "\n")
    assert "crc32" not in m.read_text()
    flip_last_byte(tmp_path / "x_00001.npy")  # unchecked: the changed value is read as it is
    with parml.open_shards(tmp_path) as s:
        assert len(s) == N and s.input_shape == (N, F)


@pytest.mark.parametrize(
    "suffix, match",
    [("crc32=123", r"manifest.txt:4: '123' .* not a CRC-32"), ("crc32=zzzzzzzz,00000000", "not a CRC-32"),
     ("crc32=00000000", r"manifest.txt:4: crc32=00000000 gives 1 checksum\(s\) for 2 file\(s\)")],
)
def test_bad_checksum_fields_name_the_line(tmp_path, suffix, match):
    x, y = data()
    write(tmp_path, x, y, rows=100)
    m = tmp_path / "manifest.txt"
    lines = m.read_text().splitlines()
    lines[3] = lines[3].rsplit(" crc32=", 1)[0] + " " + suffix
    m.write_text("\n".join(lines) + "\n")
    refused(tmp_path, parml.FormatError, match)


def test_make_shards_can_leave_them_out(tmp_path):
    import subprocess
    import sys

    from test_streaming import ROOT

    out = tmp_path / "s"
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_shards.py"), str(out), "--synthetic", "50",
                    "--rows-per-shard", "20", "--dims", "4", "--no-checksums"], check=True, capture_output=True)
    assert "crc32" not in (out / "manifest.txt").read_text()
    with parml.open_shards(out) as s:
        assert len(s) == 50
