#!/usr/bin/env python3
"""Merge benchmark outputs into bench/results.json and print one table.

usage: bench_report.py ENGINE_JSON RESULTS_JSONL... OUT_JSON

ENGINE_JSON is what build/bench writes (machine, date, results); each
RESULTS_JSONL has one result object per line (ParmlBenchCollectives,
build/bench_files).
"""
import json
import sys


def main() -> None:
    engine_path, *jsonl_paths, out_path = sys.argv[1:]
    with open(engine_path, encoding="utf-8") as f:
        report = json.load(f)
    for path in jsonl_paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    report["results"].append(json.loads(line))
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    m = report["machine"]
    print(f"{m['cpu']}, {m['cores']} cores, OpenBLAS {m['openblas_core']}, {report['date']}")
    print(f"{'name':<32} {'value':>12} {'unit':<10} {'baseline':>12} {'ratio':>7}  baseline is")
    def number(v):
        # Fractions and GB/s below 100 keep three significant digits.
        return f"{v:>12.4g}" if abs(v) < 100 else f"{v:>12.1f}"

    for r in report["results"]:
        print(f"{r['name']:<32} {number(r['value'])} {r['unit']:<10} {number(r['baseline_value'])} "
              f"{r['ratio']:>7.3f}  {r['baseline']}")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
