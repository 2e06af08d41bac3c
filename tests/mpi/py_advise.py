"""The strategy advisor inside an MPI job (issue 19): every process calls
parml.advise(backend="mpi"); the job measures its collectives together the
first time (rank 0 stores them in the calibration file, the second advice
measures nothing), every process gets the same ranking of layouts of all
the job's processes; a wrong max_ranks is refused on every process; no
process holds more than its layout's predicted peak; a trainer's default
threads follow mpirun's binding; and strategy auto builds the first layout
on the MPI backend, whose training equals the threads backend's in that
layout bit for bit.
argv[1]: the calibration directory, shared by the processes.
Prints "rank R: ok ..." or raises. (tests/mpi/run_mpi_tests.sh)"""
import os
import sys

import numpy as np

import parml
from mpi_check import assert_bitwise_equal, report_ok

cache = sys.argv[1]
rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
size = int(os.environ["OMPI_COMM_WORLD_SIZE"])
rng = np.random.default_rng(4)
x = rng.standard_normal((64, 12), dtype=np.float32)
y = (np.arange(64) % 4).astype(np.int64)


def model() -> parml.Model:
    return parml.Sequential([parml.Linear(12, 64), parml.ReLU(), parml.Linear(64, 64), parml.ReLU(), parml.Linear(64, 4)], seed=6)


def sgd() -> parml.SGD:
    return parml.SGD(0.05, momentum=0.9)


def ranking(advice: parml.Advice) -> list:
    return [(p.dp, p.pp, p.tp, p.micro_batches, p.zero_stage, p.schedule, p.step_seconds, p.peak_bytes) for p in advice.ranked]


calibration = os.path.join(cache, "calibration-v2.txt")
first = parml.advise(model(), (12,), 64, optimizer=sgd(), backend="mpi", deterministic=True, cache_dir=cache, show=False)
assert first.ranked, first.text
assert all(p.dp * p.pp * p.tp == size for p in first.ranked), [(p.dp, p.pp, p.tp) for p in first.ranked]
with open(calibration) as f:
    lines = f.read().splitlines()
assert f"process_send {size} " in "\n".join(lines), lines
assert any(line.startswith(f"process_allreduce {size} {size} ") for line in lines), lines
stamp = os.stat(calibration).st_mtime_ns
# Every process's ranking, through files the second (collective) advice orders after.
with open(os.path.join(cache, f"ranking{rank}.txt"), "w") as f:
    f.write(repr(ranking(first)))
second = parml.advise(model(), (12,), 64, optimizer=sgd(), backend="mpi", deterministic=True, cache_dir=cache, show=False)
assert "calibration: cached" in second.text, second.text.splitlines()[0]
assert ranking(second) == ranking(first)
assert os.stat(calibration).st_mtime_ns == stamp, "the second advice measured again"
for r in range(size):
    with open(os.path.join(cache, f"ranking{r}.txt")) as f:
        assert f.read() == repr(ranking(first)), f"rank {r} ranked the layouts otherwise"
try:
    parml.advise(model(), (12,), 64, backend="mpi", max_ranks=size + 1, cache_dir=cache, show=False)
    raise AssertionError("max_ranks past the job was accepted")
except parml.InvalidArgumentError as e:
    assert f"the MPI job has {size} process(es)" in str(e), e

# No process holds more than the fullest rank's predicted peak.
for p in first.ranked:
    with parml.Trainer(model(), optimizer=sgd(), strategy=p.strategy(backend="mpi", deterministic=True)) as t:
        t.step(x, y)
        held = sum(t.memory(rank))
    assert held <= p.peak_bytes * 1.001, (p, held)

# Default threads: the cores mpirun bound this process to where it bound it
# to fewer than the machine's (a job of 1 or 2), else the cores shared out.
allowed, online = len(os.sched_getaffinity(0)), os.cpu_count()
threads = allowed if allowed < online else max(1, online // size)
with parml.Trainer(model(), strategy=parml.Strategy(backend="mpi", dp=size)) as t:
    plan = t.plan()
    word = "thread" if threads == 1 else "threads"
    assert f"mpi backend, {threads} {word} per rank" in plan, (allowed, online, plan.splitlines()[0])

# Strategy auto on MPI: the first layout, trained; equal to threads in that layout.
auto = parml.Auto((12,), 64, backend="mpi", deterministic=True, cache_dir=cache)
m = model()
with m, parml.Trainer(m, optimizer=sgd(), strategy=auto) as t:
    plan = t.plan()
    assert "advisor" in plan.lower(), plan
    for _ in range(3):
        t.step(x, y)
    mpi = m.parameters.copy()
best = first.ranked[0]
layout = dict(dp=best.dp, pp=best.pp, tp=best.tp, micro_batches=best.micro_batches, zero=best.zero_stage)
if best.schedule == "interleaved":
    layout.update(schedule="interleaved", virtual_stages=best.virtual_stages)
m = model()
with m, parml.Trainer(m, optimizer=sgd(), strategy=parml.Strategy(backend="threads", deterministic=True, **layout)) as t:
    for _ in range(3):
        t.step(x, y)
    threads = m.parameters.copy()
assert_bitwise_equal(mpi, threads)
report_ok(f"advice in a job of {size}: the same {len(first.ranked)} layouts everywhere, auto chose {layout}, equal to threads")
