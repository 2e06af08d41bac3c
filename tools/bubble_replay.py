#!/usr/bin/env python3
"""Splits a pipeline's measured bubble into what its stages' compute times
explain and what the engine added (hand-overs, waking, copies).

usage: bubble_replay.py TRACE.json

TRACE.json is a Chrome trace of one pipeline (dp = 1), e.g. from
`ParmlBenchPipeline bubble P M TRACE.json`. For every recorded step the
script replays each stage's forwards and backwards in the order the stage
ran them, with the durations they took, but with instant hand-overs: an
operation starts as soon as its stage is free and its input exists
(forward j after forward j on the stage before; backward j after backward
j on the stage after, or after forward j on the last stage; under
interleaved 1F1B the same between runs of layers, run c on stage c mod p).
The idle fraction of that replay is the bubble those compute times imply:
with equal stages it is (p−1)/(v·m+p−1) (v = 1 but for interleaved 1F1B);
unequal stages (here: vCPUs running at different speeds) make it larger. Both figures are computed as
Trainer.measuredBubble does: per step, 1 − busy / (first forward to last
backward), the median over steps, the mean over stages. Sends count as
busy in the measured figure and take no time in the replay.
"""
import json
import statistics
import sys


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    events = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e.get("ph") == "X"]
    stages = sorted({e["args"]["stage"] for e in events})
    p = len(stages)
    # The run of layers an event belongs to (traces before runs were
    # recorded: the stage).
    run = lambda e: e["args"].get("run", e["args"]["stage"])
    runs = max(run(e) for e in events if e["cat"] in ("forward", "backward")) + 1
    steps = sorted({e["args"]["step"] for e in events})
    measured = {s: [] for s in stages}
    replayed = {s: [] for s in stages}
    ratio = []
    m = 0
    for step in steps:
        ops = {s: sorted((e for e in events if e["args"]["step"] == step and e["args"]["stage"] == s
                          and e["cat"] in ("forward", "backward", "send")), key=lambda e: e["ts"]) for s in stages}
        compute = [e for s in stages for e in ops[s] if e["cat"] != "send"]
        if not compute:
            continue
        m = max(e["args"]["micro_batch"] for e in compute) + 1
        start = min(e["ts"] for e in compute)
        end = max(e["ts"] + e["dur"] for e in compute)
        for s in stages:
            busy = sum(e["dur"] for e in ops[s])
            measured[s].append(1 - busy / (end - start))
        # The replay: each stage runs its own order with its own durations.
        done = {}
        free = {s: 0.0 for s in stages}
        queues = {s: [e for e in ops[s] if e["cat"] != "send"] for s in stages}
        while any(queues.values()):
            progressed = False
            for s in stages:
                while queues[s]:
                    e = queues[s][0]
                    j, kind, c = e["args"]["micro_batch"], e["cat"], run(e)
                    if kind == "forward":
                        need = [("forward", c - 1, j)] if c > 0 else []
                    else:
                        need = [("forward", c, j)] + ([("backward", c + 1, j)] if c < runs - 1 else [])
                    if any(n not in done for n in need):
                        break
                    t = max([free[s]] + [done[n] for n in need])
                    free[s] = t + e["dur"]
                    done[(kind, c, j)] = free[s]
                    queues[s].pop(0)
                    progressed = True
            if not progressed:
                sys.exit(f"step {step}: the recorded order cannot be replayed (a dependency is missing)")
        span = max(done.values())
        for s in stages:
            busy = sum(e["dur"] for e in ops[s] if e["cat"] != "send")
            replayed[s].append(1 - busy / span)
        ratio.append((end - start) / span)
    mean = lambda d: sum(statistics.median(v) for v in d.values()) / len(d)
    v = runs // p
    formula = (p - 1) / (v * m + p - 1)
    print(f"p {p}, v {v}, m {m}, {len(ratio)} steps; formula (p-1)/(v*m+p-1) = {formula:.3f}")
    for s in stages:
        print(f"  stage {s}: measured {statistics.median(measured[s]):.3f}, replayed {statistics.median(replayed[s]):.3f}")
    print(f"bubble: measured {mean(measured):.3f}, replayed from the compute times {mean(replayed):.3f}; "
          f"makespan measured / replayed: median {statistics.median(ratio):.3f}")


if __name__ == "__main__":
    main()
