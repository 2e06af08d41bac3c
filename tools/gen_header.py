#!/usr/bin/env python3
"""Turn the header swiftc writes for the @c functions into include/parml.h.

swiftc -emit-clang-header-path emits a header that works for clang but not
cleanly for gcc or C++ (clang pragmas, Swift vector typedefs, nullability
keywords). Only its declarations (with their /// doc comments) are kept;
they go into tools/parml.h.in, which holds the stable prologue, grouped by
object in the reading order of tools/header_groups.py.

usage: gen_header.py RAW_SWIFT_HEADER TEMPLATE > include/parml.h
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from header_groups import GROUPS  # noqa: E402

# Swift's doc-comment rendering turns ASCII into typography; keep the header ASCII.
TYPOGRAPHY = {"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u2026": "...",
              "\u2013": "-", "\u2014": "-"}


def declarations(raw: str) -> str:
    m = re.search(r'^extern "C" \{\n(.*?)^\} // extern "C"', raw, re.S | re.M)
    if not m:
        sys.exit("gen_header: no extern \"C\" block in the Swift header")
    body = m.group(1)
    # Drop the preprocessor lines Swift puts at the top of the block.
    lines = [l for l in body.splitlines() if not l.startswith("#")]
    text = "\n".join(lines).strip() + "\n"
    text = re.sub(r"\b(_Nullable|_Nonnull|_Null_unspecified)\b ?", "", text)
    text = text.replace("SWIFT_EXTERN ", "PARML_API ")
    text = re.sub(r" SWIFT_NOEXCEPT| SWIFT_WARN_UNUSED_RESULT", "", text)
    # Swift renders /// comments as Markdown; undo what it turned into HTML.
    text = re.sub(r"<code>(.*?)</code>", r"`\1`", text)
    text = re.sub(r"</?strong>", "**", text)
    text = re.sub(r"</?em>", "*", text)
    if re.search(r"</?[a-z]+>", text):
        bad = [l for l in text.splitlines() if re.search(r"</?[a-z]+>", l)]
        sys.exit("gen_header: HTML left in doc comments:\n" + "\n".join(bad[:5]))
    text = re.sub(r"\bout_\b", "out", text)  # Swift renames `out` (an ObjC keyword)
    text = re.sub(r"\s+\*", " *", text)
    text = re.sub(r"\* (?=[),])", "*", text)
    text = text.replace("* *", "**")
    for k, v in TYPOGRAPHY.items():
        text = text.replace(k, v)
    if "SWIFT_" in text or re.search(r"[^\x00-\x7f]", text):
        bad = [l for l in text.splitlines() if "SWIFT_" in l or re.search(r"[^\x00-\x7f]", l)]
        sys.exit("gen_header: unexpected Swift macro or non-ASCII text left:\n" + "\n".join(bad[:5]))
    return text.rstrip("\n")


def grouped(text: str) -> str:
    """The declarations in the reading order of tools/header_groups.py
    (Swift emits them alphabetically), each group under its heading."""
    units = {}
    for m in re.finditer(r"((?:^///.*\n)*)^(PARML_API[^;]*\b(parml_\w+)\([^;]*;)", text, re.M):
        units[m.group(3)] = m.group(1) + m.group(2)
    listed = [name for _, _, names in GROUPS for name in names]
    unplaced = sorted(set(units) - set(listed))
    gone = sorted(set(listed) - set(units))
    twice = sorted({n for n in listed if listed.count(n) > 1})
    if unplaced or gone or twice:
        sys.exit(f"gen_header: tools/header_groups.py is out of step: in no group {unplaced}, "
                 f"listed but not declared {gone}, listed twice {twice}")
    out = []
    for title, paragraph, names in GROUPS:
        rule = "/* " + "-" * 72 + " */"
        head = [rule, f"/* {title:<72} */"] + [f"/* {line:<72} */" for line in paragraph.split("\n")] + [rule]
        out.append("\n".join(head) + "\n\n" + "\n\n".join(units[n] for n in names))
    return "\n\n".join(out)


def main() -> None:
    raw_path, template_path = sys.argv[1], sys.argv[2]
    raw = open(raw_path, encoding="utf-8").read()
    template = open(template_path, encoding="utf-8").read()
    sys.stdout.write(template.replace("@DECLARATIONS@", grouped(declarations(raw))))


if __name__ == "__main__":
    main()
