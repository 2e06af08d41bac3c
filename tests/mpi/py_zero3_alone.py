"""Misuse of the ZeRO-3 gather under mpirun -np 2 (issue 17): rank 1 calls
parml_trainer_gather_params alone while rank 0 does something else. The
collective must not hang: rank 1 fails with CommunicationError once the
2 s watchdog expires, naming the all-gather and the rank it waited for,
and the job then ends (the failed trainer ends it when freed, as after any
failed collective). Prints "rank 1: refused after S s: MESSAGE".
(tests/mpi/run_mpi_tests.sh)"""
import os
import sys
import time

import numpy as np

import parml
from mpi_check import small_gpt

rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
model = small_gpt(16, 8, 16)
trainer = parml.Trainer(model, optimizer=parml.AdamW(1e-3), strategy=parml.Strategy(dp=2, zero=3, backend="mpi", watchdog_seconds=2))
ids = np.random.default_rng(0).integers(0, 16, size=(8, 9)).astype(np.int32)
trainer.step(ids[:, :-1], ids[:, 1:])
if rank == 1:
    start = time.monotonic()
    try:
        trainer.gather_params()
    except parml.CommunicationError as e:
        print(f"rank 1: refused after {time.monotonic() - start:.1f} s: {e}")
    else:
        print("rank 1: a lone gather returned")
    sys.stdout.flush()
else:
    time.sleep(8)  # not in the collective; the job ends meanwhile
