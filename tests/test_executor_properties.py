"""Random current/target pairs through the fake node via the nvml backend: always at the target, every
intermediate state valid (checked after every state-changing NVML call), untouched instances undisturbed;
and with a random operation failing or the process crashing, at the target or back at the start."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pynvml
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlmig.executor import ApplyError, FakeCrash, Journal, plan_transition
from tests.test_executor_helpers import Node, config_pairs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_pairs())
def test_random_pairs_end_at_the_target_through_valid_states(pair):
    current, target = pair
    node = Node.make(current, target)
    plan = node.executor.plan(target)
    plan.check()
    result = node.executor.apply(target)
    assert result.status == "complete"
    assert node.at(target)

    def normal(config):  # time-sharing tenants are a set; their order is not the executor's business
        return [(g.mig_enabled, g.layout, g.owners, sorted(g.time_shared)) for g in config.gpus]

    assert normal(result.state) == normal(target)
    # untouched instances were never re-created nor their tenants restarted
    assert {(g, i) for g, i in plan.untouched} == set(node.untouched)
    assert not any(
        op.instance == inst and op.gpu == g for op in plan.operations for g, inst in plan.untouched
    )
    # nothing more to do afterwards
    assert node.executor.plan(target).operations == ()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config_pairs(max_gpus=2),
    st.integers(1, 30),
    st.sampled_from([pynvml.NVML_ERROR_UNKNOWN, pynvml.NVML_ERROR_IN_USE]),
)
def test_a_random_failing_operation_rolls_back_to_the_start(pair, nth, error):
    current, target = pair
    node = Node.make(current, target)
    node.fake.fail_operation(nth, error)
    try:
        result = node.executor.apply(target)
    except ApplyError as exc:
        assert exc.result.status == "rolled_back"
        assert "\n" not in str(exc)
        assert node.at(current)
    else:
        assert result.status == "complete" and node.at(target)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_pairs(max_gpus=2), st.integers(1, 30))
def test_a_crash_anywhere_is_recovered_from_the_journal(pair, n):
    current, target = pair
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "journal.jsonl", fsync=False)
        node = Node.make(current, target, journal=journal)
        node.fake.crash_after(n)
        try:
            node.executor.apply(target)
        except FakeCrash:
            node.fake.disarm()
            result = node.fresh_executor(journal).recover()
            assert result is not None and result.status == "complete"
        assert node.at(target)
        assert node.fresh_executor(journal).recover() is None


def test_plans_are_the_diff_layouts_order_per_gpu():
    from rlmig.configuration import Configuration
    from rlmig.geometry import diff_layouts, gpu_model

    gpu = gpu_model("A100-80GB")
    current = Configuration.parse(gpu, [["3g.40gb@0"]])
    target = Configuration.parse(gpu, [["2g.20gb@0", "1g.10gb@2", "3g.40gb@4"]])
    plan = plan_transition(current, target)
    mig = [(op.kind, str(op.instance)) for op in plan.operations if op.kind in ("create_gi", "destroy_gi")]
    steps = [
        ("create_gi" if s.op == "create" else "destroy_gi", str(s.instance))
        for s in diff_layouts(current.gpus[0].layout, target.gpus[0].layout).steps
    ]
    assert mig == steps


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
