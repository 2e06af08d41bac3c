"""Builds the parml wheel with libparml.so and the .proto schemas inside.

pyproject.toml holds the metadata; this file only adds what a platform wheel
needs: the library and proto/ copied into the package when it is built, and
the wheel tagged for the platform (the bindings are ctypes, so any Python 3
on Linux x86_64 can use one wheel: py3-none-linux_x86_64).

The library comes from $PARML_WHEEL_LIBRARY when set, else from the
repository's .build/release (what `make lib` writes); when a checkout has
no build yet, it runs `swift build -c release --product parml`, and says
plainly when Swift is missing. An sdist carries the Swift package under
swift/ (swift_paths()), so building from it works the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# What `swift build --product parml` needs of the repository: the package
# manifest names every target, so their directories must all be there (the
# `path:` of each target outside Sources and Tests, read from the manifest).
SWIFT_PATHS = ["Package.swift", "Sources", "Tests", "include", "proto"]


def swift_paths(package: Path) -> list[str]:
    """SWIFT_PATHS and the other target directories `package`'s manifest names."""
    named = re.findall(r'path: "([^"]+)"', (package / "Package.swift").read_text())
    return SWIFT_PATHS + sorted({p for p in named if p.split("/")[0] not in ("Sources", "Tests")})


def swift_package() -> Path | None:
    """The Swift package to build the library from: the checkout around
    bindings/python, or the copy an sdist carries in swift/."""
    for root in (REPO, HERE / "swift"):
        if (root / "Package.swift").is_file() and (root / "Sources" / "Parml").is_dir():
            return root
    return None


def library() -> Path | None:
    """The libparml.so to bundle, building it in a checkout when needed."""
    override = os.environ.get("PARML_WHEEL_LIBRARY")
    if override:
        path = Path(override)
        if not path.is_file():
            raise SystemExit(f"PARML_WHEEL_LIBRARY={override}: no such file")
        return path
    package = swift_package()
    if package is None:
        return None  # neither a checkout nor an sdist: a pure-Python build (the library comes from elsewhere)
    built = package / ".build" / "release" / "libparml.so"
    if built.is_file():
        return built
    if shutil.which("swift") is None:
        raise SystemExit(
            "building the parml wheel needs libparml.so: run `make lib` in the repository "
            "(it needs the Swift toolchain, 6.3 or later, which is not on PATH), or set "
            "PARML_WHEEL_LIBRARY to a built libparml.so"
        )
    subprocess.run(["swift", "build", "-c", "release", "--product", "parml"], cwd=package, check=True)
    return built


class BuildWithLibrary(build_py):
    """build_py that also puts libparml.so and proto/*.proto in the package."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "parml"
        lib = library()
        if lib is not None:
            shutil.copyfile(lib, target / "libparml.so")
        package = swift_package()
        proto = (package or REPO) / "proto"
        if proto.is_dir():
            (target / "proto").mkdir(exist_ok=True)
            for p in sorted(proto.glob("*.proto")):
                shutil.copyfile(p, target / "proto" / p.name)


class SdistWithSwiftPackage(sdist):
    """An sdist that can build the library: the Swift package goes in swift/."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        package = swift_package()
        if package is None:
            raise SystemExit("an sdist needs the Swift package: make it from a checkout of the repository")
        dest = Path(base_dir) / "swift"
        skip = shutil.ignore_patterns(".build", ".build-*", "__pycache__", "*.o")
        for rel in swift_paths(package):
            src, dst = package / rel, dest / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=skip, symlinks=True)
            else:
                shutil.copy2(src, dst)


commands = {"build_py": BuildWithLibrary, "sdist": SdistWithSwiftPackage}
try:
    from setuptools.command.bdist_wheel import bdist_wheel  # setuptools >= 70.1
except ImportError:  # older setuptools: the wheel package's
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]


class PlatformWheel(bdist_wheel):
    """A platform wheel (it carries a shared library) for any Python 3."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> tuple[str, str, str]:
        _, _, plat = super().get_tag()
        return "py3", "none", plat


commands["bdist_wheel"] = PlatformWheel
setup(cmdclass=commands)
