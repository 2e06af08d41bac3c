"""Finding libparml.so and checking its version; the package metadata."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import parml
from parml import _lib

from conftest import PACKAGE_ROOT, REPO_ROOT, subprocess_env


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(**env), capture_output=True, text=True, timeout=60
    )


def test_missing_library_names_what_was_tried(tmp_path):
    missing = tmp_path / "nowhere" / "libparml.so"
    out = run_python("import parml", PARML_LIBRARY=str(missing))
    assert out.returncode != 0
    assert "LibraryNotFoundError" in out.stderr
    assert str(missing) in out.stderr and "$PARML_LIBRARY" in out.stderr and "make lib" in out.stderr


def test_an_unloadable_file_is_reported(tmp_path):
    bogus = tmp_path / "libparml.so"
    bogus.write_text("not an ELF file")
    out = run_python("import parml", PARML_LIBRARY=str(tmp_path))  # a directory works too
    assert out.returncode != 0 and str(bogus) in out.stderr and "LibraryNotFoundError" in out.stderr


def test_explicit_library_path():
    lib = parml.library_path
    out = run_python("import parml; print(parml.library_path)", PARML_LIBRARY=lib)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == lib


def test_search_order_without_override(monkeypatch):
    monkeypatch.delenv("PARML_LIBRARY", raising=False)
    found = _lib.candidates()
    assert [what for what, _ in found] == ["package directory", "repository build output", "system loader"]
    assert found[0][1].endswith("parml/libparml.so")
    assert found[1][1] == str(REPO_ROOT / ".build" / "release" / "libparml.so")
    assert found[2][1] == "libparml.so.0"


@pytest.mark.parametrize(
    "library, package, ok",
    [
        (100, "0.1.0", True),
        (103, "0.1.0", True),  # patch differs
        (200, "0.1.0", False),  # 0.x minor differs
        (10100, "0.1.0", False),  # major differs
        (10300, "1.2.0", True),  # newer minor adds only
        (10100, "1.2.0", False),  # older minor lacks functions
        (20200, "1.2.0", False),
    ],
)
def test_version_rule(library, package, ok):
    if ok:
        _lib.check_version(library, package)
    else:
        with pytest.raises(parml.LibraryVersionError, match="libparml"):
            _lib.check_version(library, package)


def test_versions_agree():
    header = (REPO_ROOT / "include" / "parml_types.h").read_text()
    header_version = re.search(r'#define PARML_VERSION_STRING "([^"]+)"', header).group(1)
    assert parml.__version__ == header_version == parml.library_version()
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    meta = tomllib.loads((PACKAGE_ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "parml"
    assert meta["tool"]["setuptools"]["dynamic"]["version"]["attr"] == "parml._version.__version__"
