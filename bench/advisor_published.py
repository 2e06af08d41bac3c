"""The advisor against a published scaling result: Horovod's 512-GPU benchmark.

    PARML_LIBRARY=$PWD/.build/release/libparml.so python3 bench/advisor_published.py

Published (github.com/horovod/horovod, README and docs/benchmarks.rst; Sergeev
and Del Balso, arXiv:1802.05799): on 128 servers with 4 Pascal GPUs each and a
RoCE-capable 25 Gbit/s network, tf_cnn_benchmarks at a batch of 64 per GPU
(weak scaling), "Horovod achieves 90% scaling efficiency for both Inception V3
and ResNet-101, and 68% scaling efficiency for VGG-16".

What the advisor is asked: the same 512 ranks (128 nodes x 4), the link at
25 Gbit/s (3.125e9 bytes/s) and 5 us, data parallelism only (dp 512, ZeRO 0),
and its predicted gradient all-reduce for the parameter counts of ResNet-101
(44,549,160) and VGG-16 (138,357,544). parml has no such GPUs and no ImageNet
CNNs of that size here, so each model stands in as one Linear layer with the
same parameter count (within 0.01 %): the all-reduce depends on the bytes only.

What is not the advisor's: the compute per step. It is fixed from one
published figure, ResNet-101's 90 %, under the model's own assumption (no
overlap of communication with compute): compute = 9 x its predicted
all-reduce. VGG-16's compute is that times the ratio of their forward
FLOPs, 15.3 / 7.6 billion (He et al. 2016, arXiv:1512.03385, Table 1 and
section 3.3), and its efficiency follows: compute / (compute + all-reduce),
against the published 68 %.
"""

from __future__ import annotations

import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bindings", "python"))
import parml  # noqa: E402

LINK = parml.Machines(nodes=128, ranks_per_node=4, cores_per_node=4, inter_node_bandwidth=25e9 / 8, inter_node_latency=5e-6)
# One Linear(4096 -> n) has 4097 n parameters.
MODELS = {"ResNet-101": (44_549_160, 10_874, 7.6e9), "VGG-16": (138_357_544, 33_772, 15.3e9)}
PUBLISHED = {"ResNet-101": 0.90, "VGG-16": 0.68}


def allreduce_seconds(outputs: int, cache_dir: str) -> tuple[float, int]:
    model = parml.Sequential([parml.Linear(4096, outputs)], seed=1)
    advice = parml.advise(model, (4096,), 64 * LINK.nodes * LINK.ranks_per_node, optimizer=parml.SGD(0.1, momentum=0.9),
                          machines=LINK, max_ranks=LINK.nodes * LINK.ranks_per_node, cache_dir=cache_dir, show=False)
    row = next(p for p in advice.ranked if (p.dp, p.pp, p.tp, p.zero_stage) == (512, 1, 1, 0))
    return row.communication_seconds, 4097 * outputs


def main() -> None:
    cache_dir = os.environ.get("PARML_CACHE_DIR") or tempfile.mkdtemp(prefix="parml-published-")
    comm = {}
    for name, (params, outputs, _) in MODELS.items():
        comm[name], standin = allreduce_seconds(outputs, cache_dir)
        print(f"{name}: {params:,} parameters (stand-in {standin:,}, {100 * (standin / params - 1):+.3f} %), "
              f"predicted all-reduce over 512 ranks {comm[name] * 1e3:.1f} ms a step")
    compute_r = comm["ResNet-101"] * PUBLISHED["ResNet-101"] / (1 - PUBLISHED["ResNet-101"])
    compute_v = compute_r * MODELS["VGG-16"][2] / MODELS["ResNet-101"][2]
    eff_v = compute_v / (compute_v + comm["VGG-16"])
    print(f"ResNet-101 compute fixed at {compute_r * 1e3:.0f} ms a step ({64 / compute_r:.0f} images/s per GPU) by its published 90 %")
    print(f"VGG-16 compute {compute_v * 1e3:.0f} ms a step; predicted efficiency {100 * eff_v:.1f} % against the published "
          f"{100 * PUBLISHED['VGG-16']:.0f} %")
    # The efficiency VGG-16's compute would need for 68 % with this all-reduce: compute / comm = 0.68 / 0.32.
    need = comm["VGG-16"] * PUBLISHED["VGG-16"] / (1 - PUBLISHED["VGG-16"])
    print(f"68 % with the predicted all-reduce needs VGG-16's compute at {need * 1e3:.0f} ms a step, "
          f"{need / compute_r:.2f}x ResNet-101's (the FLOPs say {MODELS['VGG-16'][2] / MODELS['ResNet-101'][2]:.2f}x)")


if __name__ == "__main__":
    main()
