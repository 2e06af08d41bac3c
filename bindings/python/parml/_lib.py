"""Tier 1: find and load libparml.so, and check that its version fits.

Search order (the first hit wins; nothing is searched after an explicit
override):

1. ``$PARML_LIBRARY``: a path to the library file, or a directory holding
   ``libparml.so``. When it is set and cannot be loaded, that is an error: the
   override is never silently ignored.
2. The package directory (``parml/libparml.so``), where a wheel that bundles
   the library puts it.
3. The repository's build output, ``../../.build/release`` relative to the
   package source (``bindings/python``): what ``make lib`` writes. Only when
   the package is imported from its source tree, as an editable install
   (``pip install -e bindings/python``) does.
4. The dynamic loader's own search, by SONAME (``libparml.so.0``), which finds
   a ``make install`` into a directory the loader searches.

When nothing loads, :class:`LibraryNotFoundError` lists every place tried and
why each failed.

Version rule: the library's ``parml_version_number()`` must have the
package's MAJOR; its MINOR must be at least the package's (a minor release
only adds), and while MAJOR is 0 the MINOR must be equal (0.x releases make
no compatibility promise). PATCH is free. A mismatch raises
:class:`LibraryVersionError` at import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from pathlib import Path

from ._version import __version__

ENV_VAR = "PARML_LIBRARY"
LIBRARY_NAME = "libparml.so"
SONAME = "libparml.so.0"

_PACKAGE_DIR = Path(__file__).resolve().parent
# parml/ -> bindings/python/ -> bindings/ -> repository root
_REPO_BUILD_DIR = _PACKAGE_DIR.parent.parent.parent / ".build" / "release"
# Only a package imported from its source (bindings/python, as an editable
# install does) has the repository around it.
_IN_SOURCE_TREE = (_PACKAGE_DIR.parent / "pyproject.toml").is_file()


# The run-time libraries libparml.so needs from the system, and the Debian
# packages that provide them (OpenBLAS is loaded at first use, not linked).
SYSTEM_LIBRARIES = {
    "libprotobuf-c.so.1": "libprotobuf-c1",
    "libz.so.1": "zlib1g",
    "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1",
    "libopenblas.so.0": "libopenblas0",
}


def missing_dependency_hint(error: str) -> str:
    """A line naming the Debian package for a system library that a
    loader error says is missing, or ""."""
    m = re.search(r"(lib[\w+.-]+\.so[.\d]*): cannot open shared object file", error)
    if m and m.group(1) in SYSTEM_LIBRARIES:
        return f"\n{m.group(1)} is missing: install the Debian package {SYSTEM_LIBRARIES[m.group(1)]} (apt-get install {SYSTEM_LIBRARIES[m.group(1)]})."
    return ""


def check_openblas() -> None:
    """libparml loads OpenBLAS at first use; say at import when it is absent."""
    if os.environ.get("PARML_OPENBLAS_LIBRARY") or ctypes.util.find_library("openblas"):
        return
    raise ImportError(
        "parml needs OpenBLAS (libopenblas.so.0), which the system does not have: install the Debian "
        "package libopenblas0 (apt-get install libopenblas0), or set PARML_OPENBLAS_LIBRARY to a libopenblas.so"
    )


class LibraryNotFoundError(FileNotFoundError):
    """libparml.so could not be found or loaded; the message lists what was tried."""


class LibraryVersionError(ImportError):
    """The loaded libparml.so is a version this package cannot use."""


def candidates() -> list[tuple[str, str]]:
    """The places to try, in order, as (description, path-or-name) pairs."""
    override = os.environ.get(ENV_VAR)
    if override:
        p = Path(override)
        if p.is_dir():
            p = p / LIBRARY_NAME
        return [(f"${ENV_VAR}", str(p))]
    found = [("package directory", str(_PACKAGE_DIR / LIBRARY_NAME))]
    if _IN_SOURCE_TREE:
        found.append(("repository build output", str(_REPO_BUILD_DIR / LIBRARY_NAME)))
    found.append(("system loader", SONAME))
    return found


def load() -> tuple[ctypes.CDLL, str]:
    """Loads the first candidate that works; returns (library, path)."""
    tried = []
    for what, path in candidates():
        is_file_path = os.sep in path
        if is_file_path and not os.path.exists(path):
            tried.append(f"  {what}: {path} (no such file)")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            hint = missing_dependency_hint(str(e))
            if hint:  # the library is there, a system library it needs is not
                raise LibraryNotFoundError(f"cannot load libparml ({path}): {e}{hint}") from e
            tried.append(f"  {what}: {path} ({e})")
    raise LibraryNotFoundError(
        "cannot load libparml; tried:\n"
        + "\n".join(tried)
        + f"\nBuild it with `make lib` in the repository, or set {ENV_VAR} to the "
        "path of libparml.so."
    )


def split_version(number: int) -> tuple[int, int, int]:
    """MAJOR*10000 + MINOR*100 + PATCH -> (MAJOR, MINOR, PATCH)."""
    return number // 10000, number // 100 % 100, number % 100


def check_version(library_number: int, package_version: str = __version__) -> None:
    """Raises LibraryVersionError when the library cannot serve this package."""
    lib_major, lib_minor, lib_patch = split_version(library_number)
    pkg_major, pkg_minor = (int(x) for x in package_version.split(".")[:2])
    lib_text = f"{lib_major}.{lib_minor}.{lib_patch}"
    if lib_major != pkg_major:
        problem = "a different major version"
    elif pkg_major == 0 and lib_minor != pkg_minor:
        problem = "a different 0.x minor version (0.x releases are not compatible)"
    elif lib_minor < pkg_minor:
        problem = "an older minor version (it lacks functions this package binds)"
    else:
        return
    raise LibraryVersionError(
        f"libparml {lib_text} is {problem} than the parml Python package "
        f"{package_version} expects; use a library built from the same release, "
        f"or point {ENV_VAR} at one"
    )


LIB, LIBRARY_PATH = load()
check_openblas()


def proto_path() -> Path:
    """The directory holding parml.proto (and onnx_subset.proto): in the
    package when installed from a wheel, else the repository's proto/. Feed
    it to protoc (or grpcio-tools) to decode parml files with the standard
    protobuf package."""
    for d in (_PACKAGE_DIR / "proto", _PACKAGE_DIR.parent.parent.parent / "proto"):
        if (d / "parml.proto").is_file():
            return d
    raise FileNotFoundError("parml.proto is neither in the package (a wheel ships it) nor in a repository around it")


def _probe_version(lib: ctypes.CDLL) -> int:
    fn = lib.parml_version_number
    fn.argtypes = []
    fn.restype = ctypes.c_int32
    return int(fn())


LIBRARY_VERSION_NUMBER = _probe_version(LIB)
check_version(LIBRARY_VERSION_NUMBER)
