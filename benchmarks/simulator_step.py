"""Time one simulator interval for 8 GPUs x 8 tenants (the issue's target: well under a millisecond).

    python -m benchmarks.simulator_step [--repeat 20000]

Prints the median and p99 time of `Simulator.step` (configurations already encoded, as a planner loop
or the environment has them) and of `encode` + `step` for a configuration seen for the first time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlmig.configuration import Configuration
from rlmig.eval.sweep import cluster_workload
from rlmig.simulator import Simulator


def build() -> tuple[Simulator, list[Configuration]]:
    workload = cluster_workload()
    sim = Simulator(workload)
    a = [[f"4g.40gb@0=t{g}", f"2g.20gb@4=t{(g + 1) % 8}", f"1g.10gb@6=t{(g + 2) % 8}"] for g in range(8)]
    b = [
        [f"3g.40gb@0=t{g}", f"3g.40gb@4=t{(g + 2) % 8}" + (":retraining" if g % 2 == 0 else "")]
        for g in range(8)
    ]
    return sim, [Configuration.parse(workload.gpu, a), Configuration.parse(workload.gpu, b)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20000)
    args = parser.parse_args()
    sim, (a, b) = build()
    ea, eb = sim.encode(a), sim.encode(b)
    rates = sim.workload.rates
    state = sim.initial_state()
    times = np.empty(args.repeat)
    for k in range(args.repeat):
        t0 = time.perf_counter()
        _, state = sim.step(k % 60, state, eb if k % 2 else ea, ea if k % 2 else eb, rates[k % 60])
        times[k] = time.perf_counter() - t0
    fresh = np.empty(200)
    for k in range(200):
        sim._encoded.clear()
        t0 = time.perf_counter()
        sim.step(k % 60, state, sim.encode(b), sim.encode(a), rates[k % 60])
        fresh[k] = time.perf_counter() - t0
    for label, sample in (("step, 8 GPUs x 8 tenants", times), ("encode both + step", fresh)):
        median, p99 = np.median(sample) * 1e6, np.percentile(sample, 99) * 1e6
        print(f"{label:26s} median {median:.1f} us, p99 {p99:.1f} us")


if __name__ == "__main__":
    main()
