"""The interval simulator against cases computed by hand (DESIGN.md §3)."""

from __future__ import annotations

import numpy as np
import pytest

from rlmig.configuration import Configuration
from rlmig.simulator import Simulator, whole_gpus
from rlmig.workload import parse_workload

WORKLOAD = {
    "gpu": "A100-80GB",
    "gpus": 2,
    "interval_s": 60,
    "duration_s": 300,
    "downtime_s": 6,
    "tenants": [
        {
            "name": "a",
            "model": "resnet50",
            "slo_ms": 100,
            "load": 80,
            "retraining": {"window_s": 120, "samples": 1000, "drift": 0.1, "accuracy": 0.9},
        },
        {"name": "b", "model": "resnet50", "slo_ms": 100, "load": 60},
    ],
}


def hand_simulator() -> Simulator:
    """A simulator whose segment and training throughputs are set by hand, not by the catalog."""
    sim = Simulator(parse_workload(WORKLOAD))
    col = {p.name: j for j, p in enumerate(sim.gpu.profiles)}
    sim.serve_rate[:] = 0.0
    sim.train_rate[:] = 0.0
    sim.serve_rate[0, col["3g.40gb"]] = 100.0  # a on a 3g: 100 req/s
    sim.serve_rate[0, col["4g.40gb"]] = 120.0  # a on a 4g: 120 req/s
    sim.serve_rate[1, col["4g.40gb"]] = 50.0  # b on a 4g: 50 req/s
    sim.train_rate[0, col["3g.40gb"]] = 10.0  # a retrains at 10 samples/s on a 3g
    sim.train_rate[0, col["2g.20gb"]] = 5.0  # and 5 samples/s on a 2g
    return sim


def configs(sim: Simulator) -> list[Configuration]:
    base = ["4g.40gb@0=b", "3g.40gb@4=a"]
    return [
        Configuration.parse(sim.gpu, [base, []]),
        Configuration.parse(sim.gpu, [base, ["3g.40gb@0=a:retraining"]]),
        Configuration.parse(sim.gpu, [base, ["3g.40gb@0=a:retraining"]]),
        Configuration.parse(sim.gpu, [base, ["3g.40gb@0", "3g.40gb@4=a:retraining"]]),
        Configuration.parse(sim.gpu, [["4g.40gb@0=a", "3g.40gb@4=a"], []]),
    ]


def test_hand_computed_run():
    sim = hand_simulator()
    result = sim.run(configs(sim))
    o = result.intervals

    # Interval 0: window start, accuracy 0.9 - 0.1; no downtime for the run's first configuration.
    assert o[0].capacity.tolist() == [100.0, 50.0]
    assert o[0].served.tolist() == [80.0, 50.0]
    assert o[0].goodput == pytest.approx([80 * 60 * 0.8, 50 * 60])
    assert (o[0].reconfigured, o[0].gpus_used) == (0, 1)

    # Interval 1: a new retraining instance pays 6 s of downtime: 10 x (60 - 6) = 540 samples.
    assert o[1].progress[0] == pytest.approx(540.0)
    assert not o[1].completed[0]
    assert o[1].served.tolist() == [80.0, 50.0]  # unchanged inference instances: no downtime
    assert (o[1].reconfigured, o[1].gpus_used) == (1, 2)

    # Interval 2: a new window abandons the unfinished job (540 < 1000), accuracy drops to 0.7.
    assert o[2].progress[0] == pytest.approx(600.0)
    assert o[2].accuracy[0] == pytest.approx(0.7)
    assert o[2].goodput[0] == pytest.approx(80 * 60 * 0.7)
    assert o[2].reconfigured == 0

    # Interval 3: 400 samples left; the job moves to a new 3g, which works from 6 s at 10 samples/s:
    # done at 6 + 400 / 10 = 46 s, then accuracy 0.9.
    finish = 6 + 400 / 10
    assert o[3].completed[0]
    assert o[3].progress[0] == pytest.approx(1000.0)
    assert o[3].accuracy[0] == pytest.approx((finish * 0.7 + (60 - finish) * 0.9) / 60)
    assert o[3].goodput[0] == pytest.approx(80 * (finish * 0.7 + (60 - finish) * 0.9))
    assert o[3].reconfigured == 1

    # Interval 4: window start (0.9 - 0.1); the 4g changes owner and pays downtime, b has nothing.
    assert o[4].capacity.tolist() == pytest.approx([100 + 120 * (1 - 6 / 60), 0.0])
    assert o[4].served.tolist() == [80.0, 0.0]
    assert o[4].accuracy[0] == pytest.approx(0.8)
    assert (o[4].reconfigured, o[4].gpus_used) == (1, 1)

    goodput_a = 3 * 80 * 60 * 0.8 + 80 * 60 * 0.7 + 80 * (finish * 0.7 + (60 - finish) * 0.9)
    goodput_b = 4 * 50 * 60
    arrivals = (80 + 60) * 60 * 5
    served = 80 * 60 * 5 + 50 * 60 * 4
    m = result.metrics
    assert m.goodput_ratio == pytest.approx((goodput_a + goodput_b) / arrivals)
    assert m.slo_attainment == pytest.approx(served / arrivals)
    assert m.accuracy == pytest.approx((goodput_a + goodput_b) / served)
    assert m.gpu_seconds == (1 + 2 + 2 + 2 + 1) * 60
    assert m.reconfigs == 3


def test_job_finishing_on_a_kept_instance():
    sim = hand_simulator()
    seq = configs(sim)
    state = sim.initial_state()
    state.progress[0], state.active[0], state.accuracy[0] = 990.0, True, 0.7
    outcome, after = sim.step(3, state, sim.encode(seq[2]), sim.encode(seq[1]), np.array([80.0, 60.0]))
    # 10 samples left at 10 samples/s on the unchanged 3g: done at 1 s, no downtime.
    assert outcome.completed[0] and after.accuracy[0] == pytest.approx(0.9)
    assert outcome.accuracy[0] == pytest.approx((1 * 0.7 + 59 * 0.9) / 60)
    assert not after.active[0]


def test_a_job_runs_on_one_instance():
    sim = hand_simulator()
    two = Configuration.parse(sim.gpu, [["4g.40gb@0=a:retraining", "3g.40gb@4=a:retraining"]])
    with pytest.raises(ValueError, match="tenant 'a' retrains on two instances"):
        sim.encode(two)


def test_time_shared_whole_gpu():
    sim = hand_simulator()
    config = Configuration.parse(sim.gpu, ["whole=a,b", "whole"])
    assert str(config) == "GPU 0: whole=a,b\nGPU 1: whole"
    shared = [sim.time_shared_capacity(0, 2), sim.time_shared_capacity(1, 2)]
    outcome, _ = sim.step(1, sim.initial_state(), sim.encode(config), None, np.array([1e6, 1e6]))
    assert outcome.capacity.tolist() == pytest.approx(shared)
    assert outcome.gpus_used == 1
    # Time-slicing among two tenants gives each less than half of what the whole GPU gives one.
    assert 0 < sim.time_shared_capacity(0, 2) < sim.time_shared_capacity(0, 1) / 2 + 1e-9
    # Adding a tenant to a time-shared GPU reconfigures that tenant only (no MIG operation).
    alone = Configuration.parse(sim.gpu, ["whole=a", "whole"])
    outcome, _ = sim.step(2, sim.initial_state(), sim.encode(config), sim.encode(alone), np.ones(2))
    assert outcome.reconfigured == 1


def test_completed_job_stays_done_until_the_next_window():
    sim = hand_simulator()
    seq = configs(sim)
    state = sim.initial_state()
    state.progress[0], state.active[0], state.accuracy[0] = 1000.0, False, 0.9
    outcome, after = sim.step(3, state, sim.encode(seq[3]), sim.encode(seq[3]), np.array([80.0, 60.0]))
    assert not outcome.completed[0] and outcome.progress[0] == 1000.0 and after.accuracy[0] == 0.9


def test_rates_above_capacity_miss_and_idle_instances_serve_nobody():
    sim = hand_simulator()
    idle = Configuration.parse(sim.gpu, [["4g.40gb@0", "3g.40gb@4"], []])
    outcome, _ = sim.step(1, sim.initial_state(), sim.encode(idle), None, np.array([80.0, 60.0]))
    assert outcome.capacity.tolist() == [0.0, 0.0] and outcome.goodput.tolist() == [0.0, 0.0]
    assert outcome.gpus_used == 0


def test_configuration_errors():
    sim = hand_simulator()
    with pytest.raises(ValueError, match="unknown tenant 'zed'"):
        sim.encode(Configuration.parse(sim.gpu, [["7g.80gb@0=zed"]]))
    with pytest.raises(ValueError, match="tenant 'b' has no retraining"):
        sim.encode(Configuration.parse(sim.gpu, [["7g.80gb@0=b:retraining"]]))
    with pytest.raises(ValueError, match="uses 3 GPUs, the workload has 2"):
        sim.encode(Configuration.empty(sim.gpu, 3))
    with pytest.raises(ValueError, match="2 configurations for 5 intervals"):
        sim.run(configs(sim)[:2])


def test_whole_gpus_goes_to_the_tenants_that_lack_capacity():
    sim = hand_simulator()
    col = {p.name: j for j, p in enumerate(sim.gpu.profiles)}
    sim.serve_rate[:, col["7g.80gb"]] = [100.0, 40.0]  # a full GPU serves 80 of a's 80, 40 of b's 60 req/s
    config = whole_gpus(sim)
    assert [str(g) for g in config.gpus] == ["7g.80gb@0=a", "7g.80gb@0=b"]
    sim.serve_rate[:, col["7g.80gb"]] = [100.0, 0.0]  # b cannot be served on a full GPU at all
    assert [str(g) for g in whole_gpus(sim).gpus] == ["7g.80gb@0=a", "7g.80gb@0"]
