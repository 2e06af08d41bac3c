"""Authenticated model and checkpoint files through the bindings: the tag
recomputed with Python's hmac module, the file read by the standard
protobuf package, and every kind of tampering refused with its own error.
"Resealed" bytes had their crc32 recomputed after a change, as an attacker
who knows CRC-32 but not the key would."""

from __future__ import annotations

import hashlib
import hmac
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest

import parml

from conftest import subprocess_env
from test_files import assert_same_bits, batch, every_kind

KEY = b"python-test-key-0123456789abcdef"
OTHER = b"other-python-key-0123456789abcde"
FIELD = 46  # the auth field: tag, length, key_id (2 + 8), hmac_sha256 (2 + 32)
TRAILER = 5  # the crc32 field


def reseal(data: bytes) -> bytes:
    body = data[:-TRAILER]
    return body + b"\x7d" + zlib.crc32(body).to_bytes(4, "little")


def auth_start(data: bytes) -> int:
    return len(data) - TRAILER - FIELD


def test_round_trip_and_the_tag_python_computes(tmp_path):
    x, _ = batch(0)
    with every_kind(5) as model:
        path = tmp_path / "model.pb"
        model.save(path, key=KEY)
        data = path.read_bytes()
        assert model.to_bytes(key=KEY) == data
        plain = model.to_bytes()
        assert data[: len(plain) - TRAILER] == plain[:-TRAILER] and len(data) == len(plain) + FIELD
        s = auth_start(data)
        assert data[s : s + 4] == bytes([14 << 3 | 2, 44, 0x0A, 8]) and data[s + 12 : s + 14] == bytes([0x12, 32])
        assert data[s + 4 : s + 12] == hmac.new(KEY, b"parml key id", hashlib.sha256).digest()[:8]
        assert data[s + 14 : s + 46] == hmac.new(KEY, data[:s], hashlib.sha256).digest()
        for back in (parml.Model.load(path, key=KEY), parml.Model.from_bytes(data, key=KEY)):
            with back:
                assert_same_bits(back.predict(x), model.predict(x))


def test_other_protobuf_readers_see_the_auth_field(tmp_path, repo_root):
    if shutil.which("protoc") is None:
        pytest.skip("protoc is not installed")
    pb = pytest.importorskip("google.protobuf")  # noqa: F841
    subprocess.run(["protoc", f"--python_out={tmp_path}", f"-I{repo_root / 'proto'}", str(repo_root / "proto" / "parml.proto")], check=True)
    sys.path.insert(0, str(tmp_path))
    try:
        import parml_pb2
    finally:
        sys.path.remove(str(tmp_path))
    with every_kind(5) as model:
        data = model.to_bytes(key=KEY)
    m = parml_pb2.Model()
    m.ParseFromString(data)
    assert m.magic == "parml.model" and m.crc32 == zlib.crc32(data[:-TRAILER])
    assert m.auth.key_id == hmac.new(KEY, b"parml key id", hashlib.sha256).digest()[:8]
    assert m.auth.hmac_sha256 == hmac.new(KEY, data[: auth_start(data)], hashlib.sha256).digest()


def test_key_mismatches_are_distinct_errors():
    with every_kind(5) as model:
        signed, plain = model.to_bytes(key=KEY), model.to_bytes()
    with pytest.raises(parml.WrongKeyError, match="another key"):
        parml.Model.from_bytes(signed, key=OTHER)
    # Safe default: an authenticated file is refused without its key.
    with pytest.raises(parml.WrongKeyError, match="load it with its key"):
        parml.Model.from_bytes(signed)
    with pytest.raises(parml.MissingTagError, match="no authentication tag"):
        parml.Model.from_bytes(plain, key=KEY)
    s = auth_start(signed)
    stripped = reseal(signed[:s] + signed[s + FIELD :])
    assert stripped == plain
    with pytest.raises(parml.MissingTagError):
        parml.Model.from_bytes(stripped, key=KEY)


@pytest.mark.parametrize(
    "region, offset, error",
    [
        ("magic", lambda d: 4, parml.TamperedError),
        ("parameters", lambda d: auth_start(d) // 2, parml.TamperedError),
        ("last body byte", lambda d: auth_start(d) - 1, parml.TamperedError),
        ("key id", lambda d: auth_start(d) + 7, parml.WrongKeyError),
        ("tag", lambda d: auth_start(d) + 30, parml.TamperedError),
        ("crc32", lambda d: len(d) - 2, parml.FormatError),
    ],
)
def test_a_bit_flip_in_each_region_is_refused(region, offset, error):
    with every_kind(5) as model:
        signed = model.to_bytes(key=KEY)
    bad = bytearray(signed)
    bad[offset(signed)] ^= 0x04
    # Without a new CRC the damage is caught as any damage.
    with pytest.raises(parml.FormatError, match="damaged"):
        parml.Model.from_bytes(bytes(bad), key=KEY)
    if region != "crc32":
        bad = reseal(bytes(bad))
    with pytest.raises(error):
        parml.Model.from_bytes(bytes(bad), key=KEY)


def test_truncated_tag_and_tag_from_another_file():
    with every_kind(5) as a, every_kind(6) as b:
        sa, sb = a.to_bytes(key=KEY), b.to_bytes(key=KEY)
    s = auth_start(sa)
    for cut in (1, 16, 32):
        short = bytearray(sa[: s + FIELD - cut] + sa[-TRAILER:])
        short[s + 1] = 44 - cut
        with pytest.raises(parml.TamperedError, match="cut or altered"):
            parml.Model.from_bytes(reseal(bytes(short)), key=KEY)
    pasted = reseal(sa[:s] + sb[s : s + FIELD] + sa[-TRAILER:])
    with pytest.raises(parml.TamperedError, match="does not verify"):
        parml.Model.from_bytes(pasted, key=KEY)


def test_checkpoints(tmp_path):
    x, y = batch(1)
    with every_kind(5) as src_model, every_kind(9) as dst_model:
        src = parml.Trainer(src_model, loss="cross_entropy", optimizer=parml.AdamW(0.01))
        dst = parml.Trainer(dst_model, loss="cross_entropy", optimizer=parml.AdamW(0.01))
        with src, dst:
            src.step(x, y)
            path = tmp_path / "run.ckpt"
            src.save_checkpoint(path, key=KEY)
            data = path.read_bytes()
            assert src.checkpoint_bytes(key=KEY) == data
            before = dst_model.parameters.copy()
            with pytest.raises(parml.WrongKeyError):
                dst.load_checkpoint(path)
            with pytest.raises(parml.WrongKeyError):
                dst.load_checkpoint(path, key=OTHER)
            bad = bytearray(data)
            bad[len(bad) // 2] ^= 1
            with pytest.raises(parml.TamperedError):
                dst.load_checkpoint_bytes(reseal(bytes(bad)), key=KEY)
            with pytest.raises(parml.MissingTagError):
                dst.load_checkpoint_bytes(src.checkpoint_bytes(), key=KEY)
            assert_same_bits(dst_model.parameters, before)
            assert dst.step_count == 0
            dst.load_checkpoint(path, key=KEY)
            assert_same_bits(dst_model.parameters, src_model.parameters)
            assert dst.step_count == 1
            # The model inside the checkpoint, with its key.
            with parml.Model.load(path, key=KEY) as m:
                assert_same_bits(m.parameters, src_model.parameters)


def test_bad_keys_and_no_key_in_messages():
    with every_kind(5) as model:
        with pytest.raises(parml.InvalidArgumentError, match="15 bytes.*at least 16"):
            model.to_bytes(key=b"x" * 15)
        with pytest.raises(TypeError, match="key must be bytes"):
            model.to_bytes(key="a str key that is long enough")  # type: ignore[arg-type]
        signed, plain = model.to_bytes(key=KEY), model.to_bytes()
    for data, key in ((signed, OTHER), (plain, OTHER), (signed, None)):
        with pytest.raises(parml.AuthenticationError) as e:
            parml.Model.from_bytes(data, key=key)
        assert OTHER.decode() not in str(e.value) and KEY.decode() not in str(e.value)


def test_without_libcrypto_plain_files_work_and_authenticated_ones_say_why(tmp_path):
    script = f"""
import parml, sys
sys.path.insert(0, {str(tmp_path)!r})
m = parml.Sequential([parml.Linear(3, 2)], seed=1)
m.save({str(tmp_path / 'p.pb')!r})
parml.Model.load({str(tmp_path / 'p.pb')!r}).close()
try:
    m.save({str(tmp_path / 'a.pb')!r}, key=b"k" * 32)
except parml.UnsupportedError as e:
    print("UNSUPPORTED", e)
"""
    env = subprocess_env(PARML_CRYPTO_LIBRARY="none")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    assert "UNSUPPORTED" in out and "libcrypto" in out, out
    assert not (tmp_path / "a.pb").exists()
