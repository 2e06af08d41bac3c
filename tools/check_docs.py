#!/usr/bin/env python3
"""Fails when the docs name API that does not exist (make check-docs).

1. Every `parml_*` identifier and `PARML_*` constant in README.md, docs/*.md,
   bindings/python/README.md and examples/ must be declared in include/*.h
   (a function, typedef, struct or macro), or be in ALLOWED below with the
   reason it is legitimately absent. A name ending in `_` (`parml_model_add_*`,
   `PARML_ERR_*`) must be the prefix of a declared one.
2. Every `Class.member` that bindings/python/README.md names for the Python
   classes (`Trainer.plan`, `parml.Model.load`, `trainer.save_checkpoint`,
   ...) must be defined in bindings/python/parml, and every `parml.name` must
   be exported by the package. Read from the source (ast), so the check needs
   no built library.
3. Every status-returning function in include/parml.h lists its codes
   ("Errors:" in its comment).

Usage: tools/check_docs.py [ROOT]   (prints what is wrong; exit 1 if anything)
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

# Names the docs may use that no header declares, each with its reason.
ALLOWED = {
    # environment variables the library or the bindings read
    "PARML_TRACE": "environment: write a Chrome trace per trainer",
    "PARML_TEST_FAULT": "environment: a test hook that injects a rank fault (docs/reliability.md)",
    "PARML_WHEEL_LIBRARY": "environment: the libparml.so bindings/python/setup.py bundles",
    "PARML_LIBRARY": "environment: where the Python bindings find libparml.so",
    "PARML_OPENBLAS_LIBRARY": "environment: another OpenBLAS to dlopen",
    "PARML_MPI_LIBRARY": "environment: another libmpi to dlopen",
    "PARML_MPI_INCLUDE": "environment of the build: where mpi.h is",
    "PARML_CONV": "environment: the conv2d backend a new layer takes (onednn or im2col)",
    "PARML_DNNL_LIBRARY": "environment: another oneDNN to dlopen (none: do not load it)",
    "PARML_GEMM": "environment: openblas runs every float32 product on OpenBLAS, none on oneDNN's matmul",
    "PARML_CRYPTO_LIBRARY": "environment: another libcrypto to dlopen for authenticated files (none: do not load it)",
    "PARML_DNNL_LAYOUT": "environment: plain keeps oneDNN on NCHW/OIHW (a measurement switch)",
    "PARML_CACHE_DIR": "environment: where the strategy advisor caches its calibration (docs/advisor.md)",
    # files
    "parml_types": "the header file parml_types.h",
    "parml_experimental": "the header file parml_experimental.h",
    "parml_pb2": "the module protoc --python_out writes from proto/parml.proto",
    "parml__model__unpack": "protobuf-c's generated function, for readers in C",
    # placeholders in docs/ABI.md's versioning rules, not real API
    "parml_x_v2": "docs/ABI.md: how a changed function would be named",
    "parml_other": "docs/ABI.md: example of a deprecation message",
    "PARML_DEPRECATED": "docs/ABI.md: the attribute deprecated functions will get",
}

IDENT = re.compile(r"\b(?:parml_[a-z0-9_]+|PARML_[A-Z0-9_]+)")


def declared_names(include: Path) -> set[str]:
    """Functions, typedefs, structs and macros declared by the public headers."""
    names: set[str] = set()
    for h in sorted(include.glob("*.h")):
        text = re.sub(r"/\*.*?\*/", "", h.read_text(), flags=re.S)
        text = re.sub(r"//[^\n]*", "", text)
        names.update(re.findall(r"#\s*(?:define|ifndef|ifdef)\s+(\w+)", text))
        names.update(re.findall(r"\b(parml_\w+)\s*\(", text))  # functions
        names.update(re.findall(r"\b(?:typedef\s+)?struct\s+(parml_\w+)", text))
        names.update(re.findall(r"\b(parml_\w+)\s*;", text))  # typedef names
        names.update(re.findall(r"\(\s*\*\s*(parml_\w+)\s*\)", text))  # function-pointer typedefs
    return names


def doc_files(root: Path) -> list[Path]:
    files = [root / "README.md", root / "bindings/python/README.md"]
    files += sorted((root / "docs").glob("*.md"))
    files += sorted(p for p in (root / "examples").rglob("*") if p.suffix in (".c", ".h", ".py", ".md", ".sh"))
    return [f for f in files if f.is_file()]


def check_identifiers(root: Path, problems: list[str]) -> None:
    declared = declared_names(root / "include")
    for f in doc_files(root):
        for lineno, line in enumerate(f.read_text().splitlines(), 1):
            for name in IDENT.findall(line):
                if name in declared or name in ALLOWED:
                    continue
                if name.endswith("_") and any(d.startswith(name) for d in declared):
                    continue
                problems.append(f"{f.relative_to(root)}:{lineno}: {name} is not declared in include/*.h")


def python_api(package: Path) -> tuple[dict[str, set[str]], set[str]]:
    """Classes of the package with their members (inherited ones included),
    and the names `parml.X` can reach."""
    classes: dict[str, tuple[set[str], list[str]]] = {}
    for py in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(py.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            members = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    members.add(item.name)
                    # attributes the methods set: self.name = ...
                    for sub in ast.walk(item):
                        targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target] if isinstance(sub, ast.AnnAssign) else []
                        members.update(
                            t.attr for t in targets
                            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self")
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    members.update(t.id for t in item.targets if isinstance(t, ast.Name))
            bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
            classes[node.name] = (members, bases)

    def all_members(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        if name not in classes or name in seen:
            return set()
        own, bases = classes[name]
        out = set(own)
        for b in bases:
            out |= all_members(b, seen | {name})
        return out

    exported: set[str] = set()
    for module in ("__init__.py", "layers.py"):
        for node in ast.parse((package / module).read_text()).body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                # Literal names only: `*_layers.__all__` and `sorted(...)` are the made classes below.
                for elt in getattr(node.value, "elts", None) or getattr(getattr(node.value, "left", None), "elts", []):
                    if isinstance(elt, ast.Constant):
                        exported.add(elt.value)
    # The layer classes are made at import from the library's kinds query;
    # their names are the `className:` of each kind in Sources/.
    for swift in (package.parents[2] / "Sources").rglob("*.swift"):
        exported.update(re.findall(r'className: "(\w+)"', swift.read_text()))
    exported.update(p.stem for p in package.glob("*.py") if not p.stem.startswith("__"))
    return {c: all_members(c) for c in classes}, exported


# Lower-case names the Python README uses for instances of these classes.
INSTANCES = {"trainer": "Trainer", "model": "Model", "tensor": "Tensor", "ds": "Dataset", "history": "History"}


def check_python_readme(root: Path, problems: list[str]) -> int:
    """Returns how many member references it checked."""
    readme = root / "bindings/python/README.md"
    members, exported = python_api(root / "bindings/python/parml")
    text = readme.read_text()
    # Fenced code blocks are checked whole; inline `spans` in the prose.
    fences = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    checked = 0

    def check(span: str, cls: str, member: str) -> None:
        nonlocal checked
        checked += 1
        if member not in members[cls]:
            problems.append(f"bindings/python/README.md: `{span.strip()[:60]}`: {cls} has no member {member}")

    # A bullet "- **Trainer**: ... `.step(x, y)` ..." (or "**Files** (Trainer)")
    # names members of that class with a leading dot.
    for bullet in re.split(r"\n(?=- )", prose):
        head = re.match(r"- \*\*(\w+)\*\*(?:\s*\((\w+)\))?", bullet)
        owner = None
        if head:
            owner = head.group(2) if head.group(2) in members else head.group(1) if head.group(1) in members else None
        for span in re.findall(r"`([^`]+)`", bullet):
            if owner and (m := re.match(r"\.([a-z_]\w*)", span)):
                check(span, owner, m.group(1))
    for span in fences + re.findall(r"`([^`]+)`", prose):
        for m in re.finditer(r"(?<![\w./])(?:parml\.)?([A-Za-z_]\w*)\.([a-z_]\w*)\b", span):
            owner, member = m.groups()
            cls = owner if owner in members else INSTANCES.get(owner)
            if cls is not None:
                check(span, cls, member)
        for m in re.finditer(r"(?<![\w./])parml\.([A-Za-z_]\w*)", span):
            if m.group(1) not in exported:
                problems.append(f"bindings/python/README.md: `{span.strip()[:60]}`: the package exports no {m.group(1)}")
    return checked


def check_errors_lists(root: Path, problems: list[str]) -> None:
    text = (root / "include/parml.h").read_text()
    for doc, name in re.findall(r"((?:///[^\n]*\n)+)PARML_API parml_status (\w+)\(", text):
        if "Errors:" not in doc:
            problems.append(f"include/parml.h: {name} returns a status but its comment lists no 'Errors:'")


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    problems: list[str] = []
    check_identifiers(root, problems)
    if check_python_readme(root, problems) < 20:
        problems.append("bindings/python/README.md: fewer than 20 Python member references found; the check is broken")
    check_errors_lists(root, problems)
    for p in problems:
        print(p)
    if problems:
        print(f"check-docs: {len(problems)} problem(s)")
        return 1
    print("PASS  docs name only API that exists; every status-returning function lists its errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
