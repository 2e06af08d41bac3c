#!/usr/bin/env python3
"""The ABI record of libparml: write it, compare it, update it.

The record (abi/parml.abi, committed) lists what the stable C API promises:
every function declared in include/parml.h with its prototype (parameter
names dropped: they are not ABI), every typedef with its size, every public
struct's size, alignment and field offsets, sizes and types (computed by
compiling a generated C program, so they are the compiler's numbers, not a
guess), and the value of every PARML_* constant macro. Functions declared in
include/parml_experimental.h are not recorded (docs/ABI.md).

usage:
  abi.py dump [--include DIR] [--lib LIBPARML.SO] [--cc CC] > fresh.abi
      With --lib, also checks that the library exports exactly the declared
      functions (stable + experimental) and that its SONAME is
      libparml.so.<PARML_VERSION_MAJOR>.
  abi.py check RECORD FRESH
      Exit 0 when FRESH equals RECORD. Otherwise prints what was removed,
      changed and added, says which version bump that needs, and exits 1.
  abi.py update RECORD FRESH [--force]
      Writes FRESH over RECORD when the header's version allows it: removed
      or changed entries need a MAJOR bump, additions a MINOR bump (relative
      to the version in RECORD). --force skips the rule; use it only while
      the version in RECORD has not been released (docs/ABI.md).

Rules (docs/ABI.md):
  - removing or changing a function, typedef, constant, struct or field is a
    break: PARML_VERSION_MAJOR must go up;
  - adding any of them is an addition: PARML_VERSION_MINOR must go up (or the
    major);
  - a struct that starts with `size_t struct_size` may grow at the end: its
    size and alignment may go up and new fields may follow the old end, an
    addition. A field added to any other struct, or inside the old size, is a
    break.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

# Words that end a type rather than name a parameter ("unsigned int").
C_TYPE_WORDS = {"void", "char", "short", "int", "long", "float", "double", "signed",
                "unsigned", "_Bool", "const", "volatile", "restrict", "struct", "enum",
                "union"}
QUALIFIERS = {"const", "volatile", "restrict"}
# Macros that are not part of the recorded ABI: include guards and the
# export/experimental switches (no value), and the version (the record's
# `version` line carries it; bumping it is what the rules ask for).
SKIP_MACROS = {"PARML_API", "PARML_H", "PARML_TYPES_H", "PARML_EXPERIMENTAL_H",
               "PARML_EXPERIMENTAL_API"}
VERSION_MACROS = ("PARML_VERSION_MAJOR", "PARML_VERSION_MINOR", "PARML_VERSION_PATCH",
                  "PARML_VERSION_NUMBER", "PARML_VERSION_STRING")


class AbiError(Exception):
    pass


# --------------------------------------------------------------------------
# Parsing the headers
# --------------------------------------------------------------------------

def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def tokens(decl):
    return re.findall(r"[A-Za-z_]\w*|\*|\[[^\]]*\]|\.\.\.", decl)


def canonical_type(decl):
    """'const char * *' -> 'char const **': one spelling per type."""
    toks = tokens(decl)
    if not toks:
        raise AbiError(f"empty type in {decl!r}")
    lead = []
    while toks and toks[0] in QUALIFIERS:
        lead.append(toks.pop(0))
    if lead:
        # Move leading qualifiers after the base type (words before the first '*').
        i = 0
        while i < len(toks) and toks[i] != "*" and not toks[i].startswith("["):
            i += 1
        toks = toks[:i] + lead + toks[i:]
    return re.sub(r"\* (?=\*)", "*", " ".join(toks))


def split_params(params):
    out, depth, cur = [], 0, ""
    for ch in params:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    out.append(cur)
    return [p.strip() for p in out if p.strip()]


def param_type(param):
    """The type of one parameter, without its name."""
    fp = re.match(r"^(.*?)\(\s*\*\s*(\w*)\s*\)\s*\((.*)\)\s*$", param, re.S)
    if fp:  # function pointer parameter: ret (*name)(args)
        return f"{canonical_type(fp.group(1))} (*)({param_list(fp.group(3))})"
    toks = tokens(param)
    if len(toks) > 1 and re.match(r"^[A-Za-z_]\w*$", toks[-1]) and toks[-1] not in C_TYPE_WORDS:
        toks = toks[:-1]
    elif len(toks) > 2 and toks[-1].startswith("[") and toks[-2] not in C_TYPE_WORDS:
        toks = toks[:-2] + ["*"]  # T name[N] as a parameter is T *
    return canonical_type(" ".join(toks))


def param_list(params):
    ps = split_params(params)
    if not ps or ps == ["void"]:
        return "void"
    return ", ".join(param_type(p) for p in ps)


def parse_functions(text, where):
    """{name: 'ret (params)'} for every PARML_API declaration."""
    funcs = {}
    body = strip_comments(text)
    for m in re.finditer(r"\bPARML_API\b([^;{}#]*);", body):
        decl = " ".join(m.group(1).split())
        if decl.startswith("__attribute__") or decl == "":
            continue
        fm = re.match(r"^(.*?)\b(parml_\w+)\s*\((.*)\)$", decl)
        if not fm:
            raise AbiError(f"{where}: cannot parse declaration: PARML_API {decl};")
        name = fm.group(2)
        if name in funcs:
            raise AbiError(f"{where}: {name} declared twice")
        funcs[name] = f"{canonical_type(fm.group(1))} ({param_list(fm.group(3))})"
    return funcs


def parse_structs(text, where):
    """[(typedef name, [(field, canonical type)])] in header order."""
    structs = []
    body = strip_comments(text)
    for m in re.finditer(r"typedef\s+struct\s+(\w+)?\s*\{(.*?)\}\s*(\w+)\s*;", body, re.S):
        name = m.group(3)
        fields = []
        for decl in m.group(2).split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            if ":" in decl or "," in decl.split("(")[0] or "{" in decl:
                raise AbiError(f"{where}: struct {name}: unsupported field (bit-field, "
                               f"several declarators or nested type): {decl!r}")
            fp = re.match(r"^(.*?)\(\s*\*\s*(\w+)\s*\)\s*\((.*)\)$", decl)
            if fp:
                fname = fp.group(2)
                ftype = f"{canonical_type(fp.group(1))} (*)({param_list(fp.group(3))})"
            else:
                am = re.match(r"^(.*?)\b(\w+)\s*((?:\[[^\]]*\]\s*)*)$", decl)
                if not am or not am.group(1).strip():
                    raise AbiError(f"{where}: struct {name}: cannot parse field {decl!r}")
                fname = am.group(2)
                ftype = canonical_type(am.group(1) + " " + am.group(3))
            fields.append((fname, ftype))
        structs.append((name, fields))
    return structs


def parse_typedefs(text, where):
    """{name: canonical type} for typedefs that are not struct bodies."""
    body = strip_comments(text)
    body = re.sub(r"typedef\s+struct\s+\w*\s*\{.*?\}\s*\w+\s*;", "", body, flags=re.S)
    out = {}
    for m in re.finditer(r"\btypedef\b([^;{}]*);", body):
        decl = " ".join(m.group(1).split())
        fp = re.match(r"^(.*?)\(\s*\*\s*(\w+)\s*\)\s*\((.*)\)$", decl)
        if fp:
            out[fp.group(2)] = f"{canonical_type(fp.group(1))} (*)({param_list(fp.group(3))})"
            continue
        nm = re.match(r"^(.*?)\b(\w+)$", decl)
        if not nm:
            raise AbiError(f"{where}: cannot parse typedef {decl!r}")
        out[nm.group(2)] = canonical_type(nm.group(1))
    return out


def parse_macros(text):
    """Object-like PARML_* macros whose value is a constant expression."""
    names = []
    for line in strip_comments(text.replace("\\\n", " ")).splitlines():
        m = re.match(r"^\s*#\s*define\s+(PARML_\w+)(\(?)\s*(.*)$", line)
        if not m or m.group(2) or m.group(1) in SKIP_MACROS:
            continue
        value = m.group(3).strip()
        if not value or re.search(r"__attribute__|__declspec|\bextern\b", value):
            continue
        if m.group(1) not in names:
            names.append(m.group(1))
    return names


# --------------------------------------------------------------------------
# Dump
# --------------------------------------------------------------------------

def c_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def layout_program(structs, typedefs, macros):
    out = ['#include "parml.h"', "#include <stddef.h>", "#include <stdio.h>",
           "static void put_i(const char *n, long long v) { printf(\"macro %s = %lld\\n\", n, v); }",
           "static void put_s(const char *n, const char *v) { printf(\"macro %s = \\\"%s\\\"\\n\", n, v); }",
           "static void put_d(const char *n, double v) { printf(\"macro %s = %.17g\\n\", n, v); }",
           "#define MACRO(m) _Generic((m), char *: put_s, const char *: put_s, float: put_d, "
           "double: put_d, default: put_i)(#m, (m))",
           "int main(void) {"]
    for name, ctype in sorted(typedefs.items()):
        out.append(f'    printf("typedef %s = %s; size %zu\\n", "{name}", {c_string(ctype)}, sizeof({name}));')
    for name, fields in structs:
        out.append(f'    printf("struct %s = size %zu align %zu\\n", "{name}", sizeof({name}), _Alignof({name}));')
        for fname, ftype in fields:
            out.append(f'    printf("field %s.%s = offset %zu size %zu type %s\\n", "{name}", "{fname}", '
                       f"offsetof({name}, {fname}), sizeof((({name} *)0)->{fname}), {c_string(ftype)});")
    for name in macros:
        out.append(f"    MACRO({name});")
    out += ["    return 0;", "}"]
    return "\n".join(out) + "\n"


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def library_exports(lib):
    r = run(["nm", "-D", "--defined-only", lib])
    if r.returncode != 0:
        raise AbiError(f"nm -D {lib} failed:\n{r.stdout}")
    return {f[2] for f in (l.split() for l in r.stdout.splitlines()) if len(f) >= 3 and re.match(r"^[A-Z]$", f[1])}


def library_soname(lib):
    r = run(["readelf", "-d", lib])
    if r.returncode != 0:
        raise AbiError(f"readelf -d {lib} failed:\n{r.stdout}")
    m = re.search(r"\(SONAME\).*\[(.*)\]", r.stdout)
    return m.group(1) if m else None


def dump(include, lib, cc):
    read = lambda n: open(os.path.join(include, n), encoding="utf-8").read()
    api, types = read("parml.h"), read("parml_types.h")
    exp_path = os.path.join(include, "parml_experimental.h")
    experimental = parse_functions(read("parml_experimental.h"), "parml_experimental.h") \
        if os.path.exists(exp_path) else {}

    funcs = parse_functions(api, "parml.h")
    if not funcs:
        raise AbiError("parml.h declares no PARML_API functions")
    both = set(funcs) & set(experimental)
    if both:
        raise AbiError(f"declared in both parml.h and parml_experimental.h: {sorted(both)}")
    structs = parse_structs(types, "parml_types.h") + parse_structs(api, "parml.h")
    typedefs = {**parse_typedefs(types, "parml_types.h"), **parse_typedefs(api, "parml.h")}
    macros = parse_macros(types) + [m for m in parse_macros(api) if m not in parse_macros(types)]
    for v in VERSION_MACROS:
        if v not in macros:
            raise AbiError(f"parml_types.h does not define {v}")

    with tempfile.TemporaryDirectory(prefix="parml_abi.") as tmp:
        src, exe = os.path.join(tmp, "layout.c"), os.path.join(tmp, "layout")
        with open(src, "w") as f:
            f.write(layout_program(structs, typedefs, macros))
        r = run([cc, "-std=c11", "-w", "-I", include, src, "-o", exe])
        if r.returncode != 0:
            raise AbiError(f"{cc} could not compile the layout program:\n{r.stdout}")
        r = run([exe])
        if r.returncode != 0:
            raise AbiError(f"the layout program failed:\n{r.stdout}")
        measured = r.stdout.splitlines()
        # gcc says x86_64-linux-gnu, clang x86_64-unknown-linux-gnu: drop the vendor.
        triple = run([cc, "-dumpmachine"]).stdout.strip().split("-")
        machine = "-".join(triple[:1] + triple[2:] if len(triple) == 4 else triple)

    values = {}
    for line in measured:
        if line.startswith("macro "):
            k, v = line[len("macro "):].split(" = ", 1)
            values[k] = v
    major, minor, patch = (int(values[f"PARML_VERSION_{p}"]) for p in ("MAJOR", "MINOR", "PATCH"))
    version = f"{major}.{minor}.{patch}"
    if values["PARML_VERSION_STRING"] != f'"{version}"':
        raise AbiError(f"PARML_VERSION_STRING is {values['PARML_VERSION_STRING']}, "
                       f"but MAJOR.MINOR.PATCH is {version}")
    if int(values["PARML_VERSION_NUMBER"]) != major * 10000 + minor * 100 + patch:
        raise AbiError(f"PARML_VERSION_NUMBER is {values['PARML_VERSION_NUMBER']}, not "
                       f"MAJOR*10000 + MINOR*100 + PATCH = {major * 10000 + minor * 100 + patch}")
    soname = f"libparml.so.{major}"

    if lib:
        exported = library_exports(lib)
        declared = set(funcs) | set(experimental)
        problems = [f"  exported but not declared in a header: {n}" for n in sorted(exported - declared)]
        problems += [f"  declared but not exported: {n}" for n in sorted(declared - exported)]
        if problems:
            raise AbiError(f"{lib} and the headers disagree:\n" + "\n".join(problems))
        actual = library_soname(lib)
        if actual != soname:
            raise AbiError(f"{lib} has SONAME {actual!r}; PARML_VERSION_MAJOR {major} needs "
                           f"{soname!r} (the -soname flag in Package.swift)")

    lines = ["# The ABI of libparml. GENERATED by tools/abi.py from include/parml.h,",
             "# include/parml_types.h and the built library: `make abi` rewrites it (only",
             "# when the version was bumped as docs/ABI.md requires), `make check-abi`",
             "# compares it with the tree. Do not edit by hand.",
             f"version {version}",
             f"soname {soname}",
             f"platform {machine}"]
    lines += [f"function {n} = {funcs[n]}" for n in sorted(funcs)]
    lines += [l for l in measured if l.startswith(("typedef ", "struct ", "field "))]
    lines += [l for l in measured if l.startswith("macro ") and l.split()[1] not in VERSION_MACROS]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Compare
# --------------------------------------------------------------------------

def load(path):
    rec = {"version": None, "soname": None, "platform": None, "entries": {}}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            word, _, rest = line.partition(" ")
            if word in ("version", "soname", "platform"):
                rec[word] = rest
            elif word in ("function", "typedef", "struct", "field", "macro") and " = " in rest:
                key, value = rest.split(" = ", 1)
                rec["entries"][f"{word} {key}"] = value
            else:
                raise AbiError(f"{path}:{n}: not an ABI record line: {line!r}")
    if not rec["version"] or not re.match(r"^\d+\.\d+\.\d+$", rec["version"]):
        raise AbiError(f"{path}: no `version MAJOR.MINOR.PATCH` line")
    rec["v"] = tuple(int(x) for x in rec["version"].split("."))
    return rec


def field_offset(value):
    return int(re.search(r"offset (\d+)", value).group(1))


def struct_size(value):
    return int(re.search(r"size (\d+)", value).group(1))


def classify(old, new):
    """(breaks, additions): lists of human-readable lines."""
    o, n = old["entries"], new["entries"]
    removed = [k for k in o if k not in n]
    added = [k for k in n if k not in o]
    changed = [k for k in o if k in n and o[k] != n[k]]
    breaks = [f"removed  {k} = {o[k]}" for k in removed]
    additions = []

    def sized(struct):  # starts with size_t struct_size, so it may grow at the end
        v = o.get(f"field {struct}.struct_size")
        return v is not None and field_offset(v) == 0

    def touched(struct):  # an old field of it was removed or changed
        return any(k.startswith(f"field {struct}.") for k in removed + changed)

    for k in changed:
        kind, name = k.split(" ", 1)
        if (kind == "struct" and sized(name) and not touched(name)
                and struct_size(n[k]) >= struct_size(o[k])):
            additions.append(f"grown    {k}: {o[k]} -> {n[k]}")
        else:
            breaks.append(f"changed  {k}: {o[k]} -> {n[k]}")
    for k in added:
        kind, name = k.split(" ", 1)
        if kind == "field":
            struct = name.split(".")[0]
            if f"struct {struct}" in o:
                if not sized(struct):
                    breaks.append(f"added    {k} = {n[k]} (to a struct without struct_size: "
                                  f"old callers do not set it)")
                    continue
                if field_offset(n[k]) < struct_size(o[f"struct {struct}"]):
                    breaks.append(f"added    {k} = {n[k]} (inside the old size "
                                  f"{struct_size(o[f'struct {struct}'])}: structs grow at the end only)")
                    continue
        additions.append(f"added    {k} = {n[k]}")
    return breaks, additions


def verdict(old, new):
    """(ok_to_update, report lines)."""
    report = []
    if old["platform"] != new["platform"]:
        report.append(f"the record was made on {old['platform']}, this is {new['platform']}: "
                      f"sizes and offsets are not comparable")
        return False, report
    breaks, additions = classify(old, new)
    ov, nv = old["v"], new["v"]
    report += breaks + additions
    ok = True
    if nv < ov:
        report.append(f"ERROR: the header's version {new['version']} is older than the record's {old['version']}")
        ok = False
    if breaks and nv[0] <= ov[0]:
        report.append(f"ERROR: ABI BREAK without a MAJOR version bump: {len(breaks)} removed or changed "
                      f"entr{'y' if len(breaks) == 1 else 'ies'} (record {old['version']}, header "
                      f"{new['version']}). Undo the change, or bump PARML_VERSION_MAJOR (and the SONAME "
                      f"in Package.swift), then run `make abi`.")
        ok = False
    if additions and nv[:2] <= ov[:2]:
        report.append(f"ERROR: {len(additions)} addition{'s' if len(additions) != 1 else ''} without a "
                      f"MINOR version bump (record {old['version']}, header {new['version']}): bump "
                      f"PARML_VERSION_MINOR (reset PATCH), then run `make abi`.")
        ok = False
    return ok, report


def main(argv):
    ap = argparse.ArgumentParser(description="The ABI record of libparml (see the module docstring).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="print the ABI record of the headers (and library)")
    d.add_argument("--include", default="include", help="directory holding parml.h (default: include)")
    d.add_argument("--lib", help="libparml.so to check the exports and SONAME of")
    d.add_argument("--cc", default=os.environ.get("CC", "cc"), help="C compiler for the layouts")
    for name, text in (("check", "exit 0 when FRESH equals RECORD, else explain"),
                       ("update", "write FRESH over RECORD if the version allows it")):
        c = sub.add_parser(name, help=text)
        c.add_argument("record")
        c.add_argument("fresh")
        if name == "update":
            c.add_argument("--force", action="store_true", help="skip the version rule (unreleased versions only)")
    args = ap.parse_args(argv)

    if args.cmd == "dump":
        sys.stdout.write(dump(args.include, args.lib, args.cc))
        return 0
    fresh_text = open(args.fresh, encoding="utf-8").read()
    if not os.path.exists(args.record):
        if args.cmd == "check":
            raise AbiError(f"no {args.record}: run `make abi` to write the first record")
        with open(args.record, "w", encoding="utf-8") as f:
            f.write(fresh_text)
        print(f"{args.record} written (first record)")
        return 0
    old, new = load(args.record), load(args.fresh)
    if open(args.record, encoding="utf-8").read() == fresh_text:
        print(f"ABI {new['version']}: {args.record} is up to date "
              f"({sum(k.startswith('function ') for k in new['entries'])} functions)")
        return 0
    ok, report = verdict(old, new)
    for line in report:
        print(line)
    if args.cmd == "check":
        if ok:
            print(f"{args.record} is out of date: the header's version ({new['version']}) allows these "
                  f"changes to the record's ({old['version']}); run `make abi` and commit {args.record}.")
        return 1
    if not ok and not args.force:
        print(f"{args.record} NOT updated. (`make abi FORCE=1` skips the version rule; use it only "
              f"while version {old['version']} is unreleased.)")
        return 1
    with open(args.record, "w", encoding="utf-8") as f:
        f.write(fresh_text)
    print(f"{args.record} updated to ABI {new['version']}" + (" (forced)" if not ok else ""))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except AbiError as e:
        print(f"abi.py: {e}", file=sys.stderr)
        sys.exit(2)
