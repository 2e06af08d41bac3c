#!/usr/bin/env python3
"""Draws GPipe and 1F1B timelines of one training step as an SVG.

usage: PARML_LIBRARY=.build/release/libparml.so python3 tools/pipeline_figure.py OUT.svg

Trains 4 identical residual blocks (256 wide, tanh) on 4 pipeline stages with
8 micro-batches, once per schedule, records one step with the trainer's
timeline (parml_trainer_set_trace), and draws each rank's forward, backward
and receive-wait slices. The traces themselves are written next to OUT.svg
(OUT.gpipe.json, OUT.1f1b.json) for Perfetto or chrome://tracing.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bindings", "python"))
import parml  # noqa: E402

COLORS = {"forward": "#4c78a8", "backward": "#54a24b", "recv (waiting)": "#e45756", "send": "#bab0ac"}


def record(schedule: str, path: str) -> list:
    blocks = [parml.Residual([parml.Linear(256, 256), parml.Tanh()]) for _ in range(4)]
    x = np.random.default_rng(0).standard_normal((512, 256), dtype=np.float32)
    strategy = parml.Strategy(pp=4, micro_batches=8, schedule=schedule, blas_threads=1)
    with parml.Sequential(blocks, seed=1) as model, parml.Trainer(model, loss="mse", strategy=strategy) as t:
        for _ in range(3):
            t.step(x, x)
        t.start_trace()
        t.step(x, x)
        t.write_trace(path)
    with open(path, encoding="utf-8") as f:
        return json.load(f)["traceEvents"]


def draw(panels: list, out: str) -> None:
    width, left, row, gap = 900, 150, 22, 40
    parts, y = [], 10
    for title, events in panels:
        slices = [e for e in events if e["ph"] == "X"]
        t0 = min(e["ts"] for e in slices)
        t1 = max(e["ts"] + e["dur"] for e in slices)
        scale = (width - left - 10) / (t1 - t0)
        parts.append(f'<text x="10" y="{y + 14}" font-size="14" font-weight="bold">{title} '
                     f'(one step, {1e-3 * (t1 - t0):.1f} ms)</text>')
        y += 24
        for rank in sorted({e["tid"] for e in slices}):
            parts.append(f'<text x="10" y="{y + 15}" font-size="12">stage {rank}</text>')
            for e in slices:
                if e["tid"] != rank:
                    continue
                kind = e["name"].split(" mb ")[0]
                color = COLORS.get(kind)
                if color is None:
                    continue
                x = left + (e["ts"] - t0) * scale
                w = max(e["dur"] * scale, 0.5)
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 4}" fill="{color}"/>')
                mb = e["args"]["micro_batch"]
                if kind in ("forward", "backward") and w > 9:
                    parts.append(f'<text x="{x + w / 2:.1f}" y="{y + 13}" font-size="10" fill="white" '
                                 f'text-anchor="middle">{mb}</text>')
            y += row
        y += gap
    legend = "".join(
        f'<rect x="{left + 130 * i}" y="{y - 20}" width="12" height="12" fill="{c}"/>'
        f'<text x="{left + 130 * i + 16}" y="{y - 10}" font-size="12">{k}</text>'
        for i, (k, c) in enumerate(COLORS.items()))
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y + 5}" '
           f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
           + "".join(parts) + legend + "</svg>\n")
    with open(out, "w", encoding="utf-8") as f:
        f.write(svg)


def main() -> None:
    out = sys.argv[1]
    base = out[:-4] if out.endswith(".svg") else out
    gpipe = record("gpipe", base + ".gpipe.json")
    f1b = record("1f1b", base + ".1f1b.json")
    draw([("GPipe, p = 4, m = 8", gpipe), ("1F1B, p = 4, m = 8", f1b)], out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
