"""The executor: planning, the fake NVML's fidelity to pynvml, the nvml backend, the journal, faults and
crashes on a fixed multi-GPU scenario (each operation failing in turn, a crash after each), mig-parted."""

from __future__ import annotations

import ctypes
import dataclasses
import inspect
import json

import pynvml
import pytest
import yaml

from rlmig.configuration import Configuration, Owner
from rlmig.errors import RlmigError
from rlmig.executor import (
    ApplyError,
    Executor,
    FakeCrash,
    FakeNvml,
    FakeTenantHooks,
    Journal,
    MigPartedBackend,
    ModeChangeRefused,
    NvmlBackend,
    Operation,
    configuration_json,
    parse_configuration,
    plan_transition,
)
from rlmig.executor.hooks import CommandHooks
from rlmig.geometry import gpu_model
from rlmig.migparted import from_mig_parted
from tests.test_executor_helpers import Node

H100 = gpu_model("H100-80GB")
A100 = gpu_model("A100-80GB")

# Four GPUs: re-owning, make-before-break with destroys, MIG turned on, MIG turned off.
CURRENT = Configuration.parse(
    H100,
    [
        ["4g.40gb@0=bert", "2g.20gb@4=gpt", "1g.10gb@6"],
        ["7g.80gb@0=resnet"],
        "whole=vit",
        ["2g.20gb@0=bert", "1g.10gb@2=gpt:retraining"],
    ],
)
TARGET = Configuration.parse(
    H100,
    [
        ["4g.40gb@0=gpt", "3g.40gb@4=bert"],
        ["3g.40gb@0=resnet", "2g.20gb@4", "1g.10gb@6=vit"],
        ["7g.80gb@0=vit"],
        "whole=bert",
    ],
)


def clean_run_operations() -> int:
    node = Node.make(CURRENT, TARGET)
    node.executor.apply(TARGET)
    assert node.at(TARGET)
    return node.fake.operations


N_OPS = clean_run_operations()


# -- planning ---------------------------------------------------------------------------------


def test_scenario_plan_is_valid_and_reaches_the_target():
    plan = plan_transition(CURRENT, TARGET)
    plan.check()
    kinds = [op.kind for op in plan.operations]
    assert kinds.count("set_mig_mode") == 2
    # the re-owned 4g.40gb@0 is drained and restarted, never recreated
    on_4g = [op.kind for op in plan.operations if op.gpu == 0 and str(op.instance) == "4g.40gb@0"]
    assert on_4g == ["drain", "start"]
    assert len(plan.operations) == N_OPS  # one state-changing call per operation, no more


def test_capacity_comes_up_on_other_gpus_before_any_goes_down():
    current = Configuration.parse(A100, [["7g.80gb@0=bert"], []])
    target = Configuration.parse(A100, [[], ["7g.80gb@0=bert"]])
    ops = [str(op) for op in plan_transition(current, target).operations]
    assert ops == [
        "GPU 1: create GPU instance 7g.80gb@0 (profile 0, placement 0:8)",
        "GPU 1: create compute instance of 7g.80gb@0",
        "GPU 1: start bert on 7g.80gb@0",
        "GPU 0: drain bert from 7g.80gb@0",
        "GPU 0: destroy compute instance of 7g.80gb@0",
        "GPU 0: destroy GPU instance 7g.80gb@0",
    ]


def test_untouched_instances_have_no_operation():
    plan = plan_transition(CURRENT, CURRENT)
    assert plan.operations == () and len(plan.untouched) == 6
    assert str(plan) == "(nothing to do)"


def test_half_built_instances_are_completed_or_destroyed_first():
    current = Configuration.parse(A100, [["3g.40gb@0", "3g.40gb@4"]])
    target = Configuration.parse(A100, [["3g.40gb@0=bert", "2g.20gb@4"]])
    gpu0 = {(0, A100.instance("3g.40gb@0")), (0, A100.instance("3g.40gb@4"))}
    plan = plan_transition(current, target, incomplete=gpu0)
    assert [str(op) for op in plan.operations[:3]] == [
        "GPU 0: destroy GPU instance 3g.40gb@4",
        "GPU 0: create compute instance of 3g.40gb@0",
        "GPU 0: start bert on 3g.40gb@0",
    ]
    plan.check()


def test_nvidia_smi_commands_use_placements_and_read_back_ids():
    current = Configuration.parse(A100, [["4g.40gb@0=bert", "2g.20gb@4=gpt"], []])
    target = Configuration.parse(A100, [["4g.40gb@0=gpt", "3g.40gb@4=bert"], "whole"])
    plan = plan_transition(current, target)
    ids = {(0, A100.instance("2g.20gb@4")): (2, (0,)), (0, A100.instance("4g.40gb@0")): (1, (0,))}
    assert plan.nvidia_smi(ids) == [
        "# GPU 0: drain gpt from 2g.20gb@4 (tenant hook)",
        "nvidia-smi mig -i 0 -dci -gi 2 -ci 0",
        "nvidia-smi mig -i 0 -dgi -gi 2",
        "nvidia-smi mig -i 0 -cgi 9:4 -C",
        "# GPU 0: start bert on 3g.40gb@4 (tenant hook)",
        "nvidia-smi -i 1 -mig 0",
        "# GPU 0: drain bert from 4g.40gb@0 (tenant hook)",
        "# GPU 0: start gpt on 4g.40gb@0 (tenant hook)",
    ]
    lone = plan_transition(
        Configuration.parse(A100, [["3g.40gb@4"]]),
        Configuration.parse(A100, [["3g.40gb@4"]]),
        incomplete={(0, A100.instance("3g.40gb@4"))},
    )
    assert lone.nvidia_smi({(0, A100.instance("3g.40gb@4")): (5, ())}) == ["nvidia-smi mig -i 0 -gi 5 -cci 2"]


def test_operations_round_trip_through_json():
    for op in plan_transition(CURRENT, TARGET).operations:
        assert Operation.from_json(json.loads(json.dumps(op.to_json())), H100) == op


def test_planning_refuses_more_gpus_than_the_node_has():
    with pytest.raises(RlmigError, match="the target configures 2 GPUs; the node has 1"):
        plan_transition(Configuration.empty(A100, 1), Configuration.empty(A100, 2))


# -- the fake against pynvml ------------------------------------------------------------------


def test_fake_functions_exist_in_pynvml_with_the_same_parameters():
    names = [n for n in dir(FakeNvml) if n.startswith("nvml") and callable(getattr(FakeNvml, n))]
    assert len(names) > 25
    for name in names:
        assert hasattr(pynvml, name), name
        if name in ("nvmlFriendlyObject", "nvmlExceptionClass"):
            continue
        ours = list(inspect.signature(getattr(FakeNvml, name)).parameters)[1:]
        theirs = list(inspect.signature(getattr(pynvml, name)).parameters)
        assert ours == theirs, name
    for name in ("NVML_ERROR_IN_USE", "NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2", "NVMLError_InUse"):
        assert getattr(FakeNvml, name) is getattr(pynvml, name)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "A100-40GB",
            {
                "1_SLICE": 19,
                "1_SLICE_REV1": 20,
                "1_SLICE_REV2": 15,
                "2_SLICE": 14,
                "3_SLICE": 9,
                "4_SLICE": 5,
                "7_SLICE": 0,
            },
        ),
        ("A30-24GB", {"1_SLICE": 14, "1_SLICE_REV1": 21, "2_SLICE": 5, "2_SLICE_REV1": 6, "4_SLICE": 0}),
    ],
)
def test_profile_index_constants_map_to_the_nvidia_smi_ids(model, expected):
    fake = FakeNvml(model, 1)
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    for suffix, profile_id in expected.items():
        info = fake.nvmlDeviceGetGpuInstanceProfileInfo(
            h, getattr(pynvml, f"NVML_GPU_INSTANCE_PROFILE_{suffix}")
        )
        assert info.id == profile_id
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetGpuInstanceProfileInfo(h, pynvml.NVML_GPU_INSTANCE_PROFILE_8_SLICE)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetGpuInstanceProfileInfo(h, 99)


def test_fake_enforces_placement_rules_with_pynvml_errors():
    fake = FakeNvml("A100-40GB", 2, mig_enabled=[True, False])
    fake.nvmlInit()
    h, off = fake.nvmlDeviceGetHandleByIndex(0), fake.nvmlDeviceGetHandleByIndex(1)

    def create(device, profile_id, start, size):
        return fake.nvmlDeviceCreateGpuInstanceWithPlacement(
            device, profile_id, ctypes.byref(pynvml.c_nvmlGpuInstancePlacement_t(start, size))
        )

    gi = create(h, 9, 4, 4)
    info = fake.nvmlGpuInstanceGetInfo(gi)
    assert (info.profileId, info.placement.start, info.placement.size) == (9, 4, 4)
    cases = [
        (lambda: create(h, 14, 4, 2), pynvml.NVMLError_InsufficientResources, 23),  # placement taken
        (lambda: create(h, 9, 2, 4), pynvml.NVMLError_InvalidArgument, 2),  # not a valid start
        (lambda: create(off, 9, 0, 4), pynvml.NVMLError_NotSupported, 3),  # MIG off
        (lambda: create(h, 42, 0, 1), pynvml.NVMLError_NotSupported, 3),  # unknown profile
        (
            lambda: fake.nvmlDeviceCreateGpuInstanceWithPlacement(
                h, 9, pynvml.c_nvmlGpuInstancePlacement_t(0, 4)
            ),
            pynvml.NVMLError_InvalidArgument,
            2,
        ),  # placement passed by value, not by reference
        (lambda: fake.nvmlDeviceGetGpuInstanceById(h, 77), pynvml.NVMLError_NotFound, 6),
    ]
    for call, cls, code in cases:
        with pytest.raises(cls) as caught:
            call()
        assert caught.value.value == code and isinstance(caught.value, pynvml.NVMLError)
    create(h, 5, 0, 4)  # 4g + 3g: valid
    assert fake.nvmlDeviceGetGpuInstanceRemainingCapacity(h, 19) == 0
    ci_profile = fake.nvmlGpuInstanceGetComputeInstanceProfileInfo(
        gi, pynvml.NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE, pynvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED
    )
    ci = fake.nvmlGpuInstanceCreateComputeInstance(gi, ci_profile.id)
    with pytest.raises(pynvml.NVMLError_InsufficientResources):  # compute of the GPU instance exhausted
        fake.nvmlGpuInstanceCreateComputeInstance(gi, ci_profile.id)
    with pytest.raises(pynvml.NVMLError_InUse):  # a compute instance remains
        fake.nvmlGpuInstanceDestroy(gi)
    fake.spawn(0, A100_40("3g.20gb@4"), "bert")
    with pytest.raises(pynvml.NVMLError_InUse):  # a process runs
        fake.nvmlComputeInstanceDestroy(ci)
    gi_id = fake.nvmlGpuInstanceGetInfo(gi).id
    mig = fake.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)  # the only GPU instance with a compute one
    assert [p.pid for p in fake.nvmlDeviceGetComputeRunningProcesses(mig)] == [
        fake.gpus[0].gis[gi_id].cis[0].processes[0].pid
    ]
    assert fake.nvmlDeviceGetGpuInstanceId(mig) == gi_id and fake.nvmlDeviceGetComputeInstanceId(mig) == 0
    with pytest.raises(pynvml.NVMLError_NotFound):
        fake.nvmlDeviceGetMigDeviceHandleByIndex(h, 3)
    fake.kill(0, A100_40("3g.20gb@4"))
    fake.nvmlComputeInstanceDestroy(ci)
    fake.nvmlGpuInstanceDestroy(gi)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):  # a stale handle
        fake.nvmlGpuInstanceGetInfo(gi)
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake.nvmlShutdown()
        fake.nvmlDeviceGetCount()


def A100_40(spec):
    return gpu_model("A100-40GB").instance(spec)


def test_fake_mode_change_waits_for_a_reset_on_ampere():
    fake = FakeNvml("A100-80GB", 1, mig_enabled=False)
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    assert fake.nvmlDeviceSetMigMode(h, pynvml.NVML_DEVICE_MIG_ENABLE) == pynvml.NVML_ERROR_RESET_REQUIRED
    assert fake.nvmlDeviceGetMigMode(h) == [0, 1]
    fake.reset(0)
    assert fake.nvmlDeviceGetMigMode(h) == [1, 1]
    hopper = FakeNvml("H100-80GB", 1, mig_enabled=False)
    hopper.nvmlInit()
    assert hopper.nvmlDeviceSetMigMode(hopper.nvmlDeviceGetHandleByIndex(0), 1) == pynvml.NVML_SUCCESS


def test_fault_injection_by_function_and_crash_after_the_effect():
    fake = FakeNvml("A100-80GB", 1)
    fake.nvmlInit()
    fake.fail("nvmlDeviceGetCount", pynvml.NVML_ERROR_UNKNOWN, nth=2)
    fake.nvmlDeviceGetCount()
    with pytest.raises(pynvml.NVMLError_Unknown):
        fake.nvmlDeviceGetCount()
    fake.nvmlDeviceGetCount()
    fake.crash_after(1)
    h = fake.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(FakeCrash):
        fake.nvmlDeviceCreateGpuInstanceWithPlacement(
            h, 0, ctypes.byref(pynvml.c_nvmlGpuInstancePlacement_t(0, 8))
        )
    assert fake.half_built(0) == [A100.instance("7g.80gb@0")]  # the effect happened, the caller never knew


# -- the nvml backend -------------------------------------------------------------------------


def test_backend_reads_back_placements_ids_and_processes():
    fake = FakeNvml.from_configuration(
        Configuration.parse(A100, [["4g.40gb@0=bert", "1g.10gb@6"], "whole=gpt"])
    )
    state = NvmlBackend(A100, fake).read()
    g0, g1 = state.gpus
    assert [(str(o.instance), o.ci_ids, len(o.pids)) for o in g0.instances] == [
        ("4g.40gb@0", (0,), 1),
        ("1g.10gb@6", (0,), 0),
    ]
    assert len({o.gi_id for o in g0.instances}) == 2  # whatever IDs the driver gave
    assert not g1.mig_enabled and len(g1.pids) == 1
    assert state.incomplete() == set()
    backend = NvmlBackend(A100, fake)
    assert backend.processes(0, A100.instance("4g.40gb@0")) == list(g0.instances[0].pids)
    assert backend.processes(0, A100.instance("1g.10gb@6")) == []
    assert backend.processes(1, None) == list(g1.pids)


def test_backend_checks_the_gpu_model_against_the_driver():
    with pytest.raises(RlmigError, match=r"GPU 0 is not a A30-24GB: NVML reports 1g\.6gb as profile 19"):
        NvmlBackend("A30-24GB", FakeNvml("A100-80GB", 1)).read()


# -- failures ---------------------------------------------------------------------------------


def test_each_operation_failing_in_turn_rolls_back_to_the_start():
    assert N_OPS > 30
    for n in range(1, N_OPS + 1):
        node = Node.make(CURRENT, TARGET)
        node.fake.fail_operation(n, pynvml.NVML_ERROR_UNKNOWN)
        with pytest.raises(ApplyError) as caught:
            node.executor.apply(TARGET)
        assert caught.value.result.status == "rolled_back", (n, str(caught.value))
        assert node.at(CURRENT), n
        assert "\n" not in str(caught.value)


def test_a_crash_after_each_operation_is_recovered_from_the_journal(tmp_path):
    for n in range(1, N_OPS + 1):
        journal = Journal(tmp_path / f"journal-{n}.jsonl")
        node = Node.make(CURRENT, TARGET, journal=journal)
        node.fake.crash_after(n)
        with pytest.raises(FakeCrash):
            node.executor.apply(TARGET)
        assert not journal.last_run(H100).finished
        node.fake.disarm()
        result = node.fresh_executor(journal).recover()
        assert result is not None and result.status == "complete", n
        assert node.at(TARGET), n
        assert node.fresh_executor(journal).recover() is None


def test_a_crash_while_rolling_back_recovers_to_the_start(tmp_path):
    fail_at = N_OPS // 2
    crashed = 0
    for m in range(1, 40):
        journal = Journal(tmp_path / f"journal-{m}.jsonl", fsync=False)
        node = Node.make(CURRENT, TARGET, journal=journal)
        node.fake.fail_operation(fail_at, pynvml.NVML_ERROR_UNKNOWN)
        node.fake.crash_after(fail_at - 1 + m)  # m state changes into the rollback
        try:
            node.executor.apply(TARGET)
        except FakeCrash:
            node.fake.disarm()
            assert journal.last_run(H100).phase == "rollback"
            node.fresh_executor(journal).recover()
            crashed += 1
        except ApplyError:
            break  # the rollback finished before the crash point
        assert node.at(CURRENT), m
    else:
        pytest.fail("the rollback never finished")
    assert crashed > 10


def test_no_permission_is_one_line_and_changes_nothing():
    node = Node.make(CURRENT, TARGET)
    node.fake.deny_permission()
    with pytest.raises(ApplyError) as caught:
        node.executor.apply(TARGET)
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        "GPU 0: destroy compute instance of 2g.20gb@4: "
        "NVML_ERROR_NO_PERMISSION (4): MIG management needs root; "
        "rolled back to the starting configuration"
    )
    assert node.at(CURRENT)  # gpt, drained first, runs again
    empty = Configuration.empty(H100, 4)
    node = Node.make(empty, TARGET)
    node.fake.deny_permission()
    with pytest.raises(
        ApplyError, match=r"NVML_ERROR_NO_PERMISSION \(4\): MIG management needs root; nothing was changed$"
    ):
        node.executor.apply(TARGET)


def test_in_use_is_one_line_and_rolls_back():
    node = Node.make(CURRENT, TARGET)
    node.fake.fail("nvmlGpuInstanceDestroy", pynvml.NVML_ERROR_IN_USE)
    with pytest.raises(ApplyError) as caught:
        node.executor.apply(TARGET)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("GPU 0: destroy GPU instance 2g.20gb@4: NVML_ERROR_IN_USE (19)")
    assert message.endswith("rolled back to the starting configuration")
    assert node.at(CURRENT)


def test_an_instance_running_processes_is_not_destroyed_without_a_drain():
    current = Configuration.parse(A100, [["3g.40gb@0", "3g.40gb@4=bert"]])
    target = Configuration.parse(A100, [["4g.40gb@0", "3g.40gb@4=bert"]])
    node = Node.make(current, target)
    node.fake.spawn(0, A100.instance("3g.40gb@0"), "stray")
    with pytest.raises(ApplyError, match=r"refused, it still runs processes 42\d\d .*; nothing was changed"):
        node.executor.apply(target)
    assert node.fake.layout(0) == current.gpus[0].layout


def test_a_persistent_failure_stops_in_a_valid_reported_state():
    node = Node.make(CURRENT, TARGET)
    node.fake.fail("nvmlGpuInstanceCreateComputeInstance", pynvml.NVML_ERROR_UNKNOWN, nth=2, times=None)
    with pytest.raises(ApplyError, match="rolling back failed too") as caught:
        node.executor.apply(TARGET)
    result = caught.value.result
    assert result.status == "stopped" and result.state is not None
    for index in range(len(TARGET.gpus)):
        assert node.fake.layout(index) in (None, result.state.gpus[index].layout)


def test_mode_changes_are_refused_unless_allowed():
    fake = FakeNvml.from_configuration(CURRENT)
    executor = Executor(NvmlBackend(H100, fake), hooks=FakeTenantHooks(fake), owners=CURRENT)
    with pytest.raises(
        ModeChangeRefused, match=r"^GPU 2, 3 needs a MIG mode change: not allowed .* nothing was changed$"
    ):
        executor.apply(TARGET)
    assert fake.operations == 0


def test_ampere_mode_change_waits_for_a_reset_then_completes():
    current = Configuration.parse(A100, [["7g.80gb@0=bert"], "whole=gpt"])
    target = Configuration.parse(A100, [["3g.40gb@0=bert", "3g.40gb@4"], ["7g.80gb@0=gpt"]])
    node = Node.make(current, target, reset_required=True)
    result = node.executor.apply(target)
    assert result.status == "pending_reset"
    assert "pending until a GPU reset (NVML_ERROR_RESET_REQUIRED)" in result.pending[1]
    assert node.fake.layout(0) == target.gpus[0].layout
    assert node.fake.nvmlDeviceGetMigMode(node.fake.nvmlDeviceGetHandleByIndex(1)) == [0, 1]
    node.fake.reset(1)
    assert node.executor.apply(target).status == "complete"
    assert node.at(target)


def test_a_pending_mode_change_is_cancelled_when_the_target_keeps_the_mode():
    current = Configuration.parse(A100, [["7g.80gb@0=bert"], "whole=gpt"])
    wanted = Configuration.parse(A100, [["7g.80gb@0=bert"], ["7g.80gb@0=gpt"]])
    node = Node.make(current, wanted, reset_required=True)
    assert node.executor.apply(wanted).status == "pending_reset"
    plan = node.executor.plan(current)  # changed our mind before the reset
    assert [str(op) for op in plan.operations] == ["GPU 1: disable MIG", "GPU 1: start gpt on the whole GPU"]
    node.target = current
    assert node.executor.apply(current).status == "complete"
    assert node.fake.nvmlDeviceGetMigMode(node.fake.nvmlDeviceGetHandleByIndex(1)) == [0, 0]
    assert node.at(current)


def test_half_built_instances_found_on_the_node_are_completed():
    current = Configuration.parse(A100, [["7g.80gb@0"]])
    node = Node.make(Configuration.parse(A100, [[]]), current)
    node.fake.nvmlInit()
    h = node.fake.nvmlDeviceGetHandleByIndex(0)
    node.fake.nvmlDeviceCreateGpuInstanceWithPlacement(
        h, 0, ctypes.byref(pynvml.c_nvmlGpuInstancePlacement_t(0, 8))
    )
    target = Configuration.parse(A100, [["7g.80gb@0=bert"]])
    node.target = target
    plan = node.executor.plan(target)
    assert [op.kind for op in plan.operations] == ["create_ci", "start"]
    node.executor.apply(target)
    assert node.at(target)


# -- the journal ------------------------------------------------------------------------------


def test_journal_records_and_a_torn_last_line(tmp_path):
    path = tmp_path / "j.jsonl"
    node = Node.make(CURRENT, TARGET, journal=Journal(path))
    node.executor.apply(TARGET)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert (
        records[0]["type"] == "begin" and records[-1]["type"] == "end" and records[-1]["status"] == "complete"
    )
    assert sum(r["type"] == "intent" for r in records) == sum(r["type"] == "done" for r in records)
    with path.open("a") as f:
        f.write('{"type": "intent", "ru')
    run = Journal(path).last_run(H100)
    assert run is not None and run.finished and str(run.state) == str(TARGET)


def test_owners_come_from_the_journal_after_a_restart(tmp_path):
    journal = Journal(tmp_path / "j.jsonl", fsync=False)
    node = Node.make(CURRENT, TARGET, journal=journal)
    node.executor.apply(TARGET)
    back = node.fresh_executor(journal).plan(CURRENT)
    drains = {str(op.owner) for op in back.operations if op.kind == "drain"}
    assert {"gpt", "bert", "resnet", "vit"} <= drains


# -- hooks ------------------------------------------------------------------------------------


def test_command_hooks_render_and_fail_one_line():
    hooks = CommandHooks("kubectl drain-tenant {tenant} --gpu {gpu} --mig {instance}", "false")
    argv = hooks.render(hooks.drain_cmd, 1, A100.instance("3g.40gb@4"), Owner("bert", "retraining"))
    assert argv == ["kubectl", "drain-tenant", "bert", "--gpu", "1", "--mig", "3g.40gb@4"]
    with pytest.raises(RlmigError, match="hook false exited 1"):
        hooks.start(0, None, Owner("bert"))
    with pytest.raises(RlmigError, match=r"--drain-cmd '\{nope\}': unknown field"):  # before any operation
        CommandHooks("{nope}", None)


# -- plan files and mig-parted ----------------------------------------------------------------


def test_plan_files_round_trip_and_errors_name_the_field():
    for config in (CURRENT, TARGET):
        assert parse_configuration(json.loads(json.dumps(configuration_json(config)))) == config
    bad = [
        ({"gpus": []}, "plan: 'gpu_model' must be a GPU model name"),
        ({"gpu_model": "V100", "gpus": []}, "plan: gpu_model: unknown GPU model 'V100'"),
        ({"gpu_model": "A100-80GB", "gpus": [{"index": 1}]}, "plan: gpus[0].index: expected 0"),
        (
            {"gpu_model": "A100-80GB", "gpus": [{"instances": [{"profile": "3g.41gb", "start": 0}]}]},
            "plan: gpus[0].instances[0].profile: unknown profile '3g.41gb'",
        ),
        (
            {
                "gpu_model": "A100-80GB",
                "gpus": [{"instances": [{"profile": "3g.40gb", "start": 0, "tenant": "x", "role": "idle"}]}],
            },
            "plan: gpus[0].instances[0]: an idle instance has tenant null",
        ),
        (
            {
                "gpu_model": "A100-80GB",
                "gpus": [{"mig_enabled": False, "instances": [{"profile": 0, "start": 0}]}],
            },
            "plan: gpus[0]: a GPU with MIG disabled has no instances",
        ),
        (
            {
                "gpu_model": "A100-80GB",
                "gpus": [
                    {"instances": [{"profile": "3g.40gb", "start": 4, "role": "serving", "tenant": "x"}]}
                ],
            },
            "plan: gpus[0].instances[0].role: must be one of inference, retraining, idle",
        ),
        ({"gpu_model": "A100-80GB", "optimal": "yes", "gpus": []}, "plan: 'optimal' must be true or false"),
    ]
    for doc, message in bad:
        with pytest.raises(RlmigError) as caught:
            parse_configuration(doc)
        assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_mig_parted_backend_writes_the_config_and_the_label(tmp_path):
    path = tmp_path / "cfg" / "mig.yaml"
    backend = MigPartedBackend(path, config_name="rlmig-42", node="gpu-7", current=CURRENT)
    with pytest.raises(RlmigError, match=r"cfg/mig\.yaml: the folder .*cfg does not exist"):
        backend.apply(TARGET)  # folders are not created behind the user's back
    path.parent.mkdir()
    result = backend.apply(TARGET)
    assert result.status == "written"
    back = from_mig_parted(yaml.safe_load(path.read_text()), H100, config_name="rlmig-42")
    assert [lay.counts() if lay else None for lay in back.values()] == [
        g.layout.counts() if g.mig_enabled else None for g in TARGET.gpus
    ]
    assert backend.label_command() == "kubectl label node gpu-7 nvidia.com/mig.config=rlmig-42 --overwrite"
    assert backend.label_patch() == {"metadata": {"labels": {"nvidia.com/mig.config": "rlmig-42"}}}
    # mig-parted rebuilds every changed GPU: nothing untouched here, every current instance destroyed
    plan = backend.plan(TARGET)
    assert plan.untouched == () and plan.count("destroy_gi") == 6
    with pytest.raises(RlmigError, match="cannot be a node label value"):
        MigPartedBackend(config_name="no spaces")


def test_mig_parted_leaves_gpus_whose_counts_match():
    current = Configuration.parse(A100, [["3g.40gb@0=bert", "3g.40gb@4=gpt"]])
    target = Configuration.parse(A100, [["3g.40gb@0=gpt", "3g.40gb@4=bert"]])
    plan = MigPartedBackend(current=current).plan(target)
    assert {op.kind for op in plan.operations} == {"drain", "start"}


def test_a_mode_change_on_a_busy_gpu_reports_the_drivers_activation_status():
    # nvmlDeviceSetMigMode succeeds on a GPU that is not idle but leaves the change pending, saying so
    # in its activation status (NVML_ERROR_IN_USE); the backend reports that, not a reset.
    fake = FakeNvml("H100-80GB", 1, mig_enabled=False)
    fake.nvmlInit()
    fake.spawn(0, None, "someone")
    h = fake.nvmlDeviceGetHandleByIndex(0)
    assert fake.nvmlDeviceSetMigMode(h, pynvml.NVML_DEVICE_MIG_ENABLE) == pynvml.NVML_ERROR_IN_USE
    assert fake.nvmlDeviceGetMigMode(h) == [0, 1]
    backend = NvmlBackend(H100, fake, allow_mode_change=True)
    note = backend.run(Operation("set_mig_mode", 0, mig_enabled=True))
    assert note is not None and "pending while the GPU is in use (NVML_ERROR_IN_USE)" in note


def test_a_library_that_does_not_match_the_driver_is_a_one_line_error(monkeypatch):
    fake = FakeNvml("H100-80GB", 1)

    def mismatch():
        raise pynvml.NVMLLibraryMismatchError(
            "Unversioned function called and the pyNVML version does not match"
        )

    monkeypatch.setattr(fake, "nvmlInit", mismatch)
    with pytest.raises(
        RlmigError, match=r"^nvmlInit: the NVML library does not match the driver \(Unversioned"
    ):
        NvmlBackend(H100, fake).read()


def test_placements_are_read_into_an_array_sized_by_the_driver():
    # The driver writes every possible placement it has, whatever the array's size; one that lists more
    # than rlmig's data (here a made-up eighth 1g start) must not overflow the array.
    fake = FakeNvml("H100-80GB", 1, extra_placements={"1g.10gb": (7,)})
    backend = NvmlBackend(H100, fake)
    inst = H100.instance("1g.10gb@3")
    assert backend.run(Operation("create_gi", 0, inst)) is None
    assert [o.instance for o in backend.read().gpus[0].instances] == [inst]
    # Asked without an array, the driver gives the count only.
    count = ctypes.c_uint(0)
    h = fake.nvmlDeviceGetHandleByIndex(0)
    fake.nvmlDeviceGetGpuInstancePossiblePlacements(h, inst.profile.id, None, ctypes.byref(count))
    assert count.value == 8


def test_the_fake_hands_out_gpu_instance_ids_in_no_predictable_order():
    # The real driver does not promise the lowest free ID; nothing in rlmig may rely on one.
    ids = []
    for seed in range(5):
        fake = FakeNvml("A100-80GB", 1, seed=seed)
        fake.nvmlInit()
        h = fake.nvmlDeviceGetHandleByIndex(0)
        placement = fake.c_nvmlGpuInstancePlacement_t(0, 1)
        gi = fake.nvmlDeviceCreateGpuInstanceWithPlacement(h, 19, ctypes.byref(placement))
        ids.append(fake.nvmlGpuInstanceGetInfo(gi).id)
    assert len(set(ids)) > 1 and ids != [1] * 5


class LateDrain(FakeTenantHooks):
    """A drain hook that returns at once; the tenant's processes exit only `polls` reads later
    (never, with None)."""

    def __init__(self, fake: FakeNvml, polls: int | None) -> None:
        super().__init__(fake)
        self.polls = polls
        self.draining: list[tuple[int, object, str]] = []
        read = fake.nvmlDeviceGetComputeRunningProcesses

        def processes(handle):
            if self.polls is not None:
                if self.polls <= 0:
                    for gpu, instance, tag in self.draining:
                        fake.kill(gpu, instance, tag)
                    self.draining.clear()
                self.polls -= 1
            return read(handle)

        fake.nvmlDeviceGetComputeRunningProcesses = processes

    def drain(self, gpu, instance, owner):
        self.draining.append((gpu, instance, str(owner)))


def test_a_new_owner_starts_only_once_the_instance_is_empty():
    current = Configuration.parse(A100, [["4g.40gb@0=bert", "3g.40gb@4=gpt"]])
    target = Configuration.parse(A100, [["4g.40gb@0=gpt", "3g.40gb@4=bert"]])
    waits: list[float] = []
    # The drain returns before bert's processes exit: the start of gpt waits for them, then goes on.
    fake = FakeNvml.from_configuration(current)
    hooks = LateDrain(fake, polls=6)
    executor = Executor(NvmlBackend(A100, fake), hooks=hooks, owners=current, sleep=waits.append)
    assert executor.apply(target).status == "complete"
    assert waits and all(len(tags) == 1 for tags in fake.tenants(0).values())
    # They never exit: the apply stops before two tenants share an instance, and says so.
    fake = FakeNvml.from_configuration(current)
    executor = Executor(
        NvmlBackend(A100, fake), hooks=LateDrain(fake, polls=None), owners=current, sleep=lambda s: None
    )
    with pytest.raises(ApplyError, match=r"still runs processes .* after its drain"):
        executor.apply(target)
    assert all(len(tags) == 1 for tags in fake.tenants(0).values())


def test_gpu_instances_of_profiles_rlmig_does_not_know_are_seen_and_block_changes_there():
    # The driver offers a profile gpus.yaml does not hold (here a made-up 2-slice one at index
    # 2_SLICE_REV1, ID 99) and someone created one with nvidia-smi: read() reports it, and no plan
    # touches that GPU, since its slots are taken by something rlmig cannot account for.
    extra = dataclasses.replace(H100.profile("2g.20gb"), id=99, name="2g.20gb+x")
    fake = FakeNvml("H100-80GB", 2, foreign_profiles={pynvml.NVML_GPU_INSTANCE_PROFILE_2_SLICE_REV1: extra})
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    placement = fake.c_nvmlGpuInstancePlacement_t(0, extra.slots)
    fake.nvmlDeviceCreateGpuInstanceWithPlacement(h, 99, ctypes.byref(placement))
    backend = NvmlBackend(H100, fake)
    state = backend.read()
    (seen,) = state.gpus[0].foreign
    assert seen.startswith("profile 99 at 0:2 (GPU instance ") and state.gpus[1].foreign == ()
    executor = Executor(backend, hooks=FakeTenantHooks(fake))
    target = Configuration.parse(H100, [["3g.40gb@4=bert"], ["7g.80gb@0=gpt"]])
    with pytest.raises(
        RlmigError, match=r"^GPU 0 holds GPU instances of profiles rlmig does not know \(profile 99"
    ):
        executor.apply(target)
    assert fake.operations == 1  # only the foreign create: nothing was changed
    # The other GPU alone can change.
    only_gpu1 = Configuration.parse(H100, [[], ["7g.80gb@0=gpt"]])
    assert executor.apply(only_gpu1).status == "complete"


class Holders:
    """Stands for the pods of a node holding MIG devices: `held` devices of one profile."""

    def __init__(self, profile: str, held: int) -> None:
        self.profile, self.held = profile, held

    def holders(self, profile) -> int:
        return self.held if profile.name == self.profile else 0


def test_an_instance_a_pod_may_still_hold_is_not_destroyed():
    # Two pods hold 3g.40gb devices (one in a crash loop: no process NVML could see); a plan that leaves
    # one 3g.40gb would take a device from one of them, so it stops and rolls back.
    current = Configuration.parse(A100, [["3g.40gb@0=a", "3g.40gb@4=b"]])
    target = Configuration.parse(A100, [["3g.40gb@0=a", "2g.20gb@4=b", "1g.10gb@6=b"]])
    fake = FakeNvml.from_configuration(current)
    executor = Executor(
        NvmlBackend(A100, fake),
        hooks=FakeTenantHooks(fake),
        owners=current,
        device_holders=Holders("3g.40gb", 2),
    )
    with pytest.raises(
        ApplyError, match=r"2 running pods on this node hold 3g\.40gb devices and only 1 would remain"
    ):
        executor.apply(target)
    assert fake.layout(0) == current.gpus[0].layout
    # One pod: the other 3g.40gb is free to go.
    executor.device_holders = Holders("3g.40gb", 1)
    assert executor.apply(target).status == "complete"


def test_hook_templates_are_checked_before_any_operation():
    with pytest.raises(
        RlmigError, match=r"--start-cmd 'echo \{nosuch\}': unknown field \{nosuch\} \(known: \{gpu\}"
    ):
        CommandHooks(None, "echo {nosuch}")
    with pytest.raises(RlmigError, match="--drain-cmd 'stop \"x': No closing quotation"):
        CommandHooks('stop "x', None)
    assert CommandHooks("kill-tenant {tenant} {gpu} {instance}", "run {tenant} --batch {batch}").start_cmd
