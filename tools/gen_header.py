#!/usr/bin/env python3
"""Turn the header swiftc writes for the @c functions into include/parml.h.

swiftc -emit-clang-header-path emits a header that works for clang but not
cleanly for gcc or C++ (clang pragmas, Swift vector typedefs, nullability
keywords). Only its declarations (with their /// doc comments) are kept;
they go into tools/parml.h.in, which holds the stable prologue.

usage: gen_header.py RAW_SWIFT_HEADER TEMPLATE > include/parml.h
"""
import re
import sys

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


def main() -> None:
    raw_path, template_path = sys.argv[1], sys.argv[2]
    raw = open(raw_path, encoding="utf-8").read()
    template = open(template_path, encoding="utf-8").read()
    sys.stdout.write(template.replace("@DECLARATIONS@", declarations(raw)))


if __name__ == "__main__":
    main()
