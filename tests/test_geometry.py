"""The GPU catalog and layout validation against the facts of DESIGN.md §2."""

from __future__ import annotations

import pytest

from rlmig.errors import InvalidLayoutError, RlmigError, UnknownGpuError, UnknownProfileError
from rlmig.geometry import GpuModel, Instance, Profile, gpu_model, gpu_models

BASE_A100_40 = ["1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"]


def test_catalog_holds_every_gpu_model():
    assert set(gpu_models()) == {
        "A100-40GB",
        "A100-80GB",
        "H100-80GB",
        "H100-94GB",
        "H200-141GB",
        "A30-24GB",
        "B200",
    }
    assert [name for name, m in gpu_models().items() if m.inferred] == ["B200"]


@pytest.mark.parametrize(
    ("gpu", "names"),
    [
        (
            "A100-40GB",
            {
                19: "1g.5gb",
                20: "1g.5gb+me",
                15: "1g.10gb",
                14: "2g.10gb",
                9: "3g.20gb",
                5: "4g.20gb",
                0: "7g.40gb",
            },
        ),
        (
            "A100-80GB",
            {19: "1g.10gb", 15: "1g.20gb", 14: "2g.20gb", 9: "3g.40gb", 5: "4g.40gb", 0: "7g.80gb"},
        ),
        (
            "H100-94GB",
            {19: "1g.12gb", 15: "1g.24gb", 14: "2g.24gb", 9: "3g.47gb", 5: "4g.47gb", 0: "7g.94gb"},
        ),
        ("H200-141GB", {19: "1g.18gb", 15: "1g.35gb", 9: "3g.71gb", 0: "7g.141gb"}),
        ("B200", {19: "1g.23gb", 15: "1g.45gb", 9: "3g.90gb", 0: "7g.180gb"}),
        ("A30-24GB", {14: "1g.6gb", 21: "1g.6gb+me", 5: "2g.12gb", 6: "2g.12gb+me", 0: "4g.24gb"}),
    ],
)
def test_profile_ids_and_names(gpu, names):
    model = gpu_model(gpu)
    for pid, name in names.items():
        assert model.profile(pid).name == name
        assert model.profile(name).id == pid


def test_eight_slot_geometry():
    a100 = gpu_model("A100-80GB")
    shape = {p.id: (p.compute, p.slots, p.max_count, p.starts) for p in a100.profiles}
    assert shape == {
        19: (1, 1, 7, (0, 1, 2, 3, 4, 5, 6)),
        20: (1, 1, 1, (0, 1, 2, 3, 4, 5, 6)),
        15: (1, 2, 4, (0, 2, 4, 6)),
        14: (2, 2, 3, (0, 2, 4)),
        9: (3, 4, 2, (0, 4)),
        5: (4, 4, 1, (0,)),
        0: (7, 8, 1, (0,)),
    }
    assert (a100.slots, a100.compute_slices) == (8, 7)


def test_a30_geometry():
    a30 = gpu_model("A30-24GB")
    assert (a30.slots, a30.compute_slices) == (4, 4)
    shape = {p.name: (p.id, p.compute, p.slots, p.max_count, p.starts) for p in a30.profiles}
    assert shape["1g.6gb"] == (14, 1, 1, 4, (0, 1, 2, 3))
    assert shape["2g.12gb"] == (5, 2, 2, 2, (0, 2))
    assert shape["2g.12gb+me"] == (6, 2, 2, 1, (0, 2))
    assert shape["4g.24gb"] == (0, 4, 4, 1, (0,))


def test_a100_40gb_memory_and_sms():
    a100 = gpu_model("A100-40GB")
    memory = {p.name: p.memory_mb for p in a100.base_profiles()}
    assert memory == {
        "1g.5gb": 4864,
        "1g.10gb": 9856,
        "2g.10gb": 9856,
        "3g.20gb": 19968,
        "4g.20gb": 19968,
        "7g.40gb": 40192,
    }
    assert [a100.profile(n).sms for n in BASE_A100_40] == [14, 28, 42, 56, 98]
    assert a100.profile("3g.20gb").memory_gb == 20.0


def test_lookups_are_forgiving_about_case_and_prefix():
    assert gpu_model("a100-40gb").name == "A100-40GB"
    assert gpu_model("A100-40GB").profile("MIG 3g.20gb").id == 9
    assert gpu_model("A100-40GB").profile("9").name == "3g.20gb"


def test_unknown_names_get_one_line_errors():
    with pytest.raises(UnknownGpuError, match="unknown GPU model 'V100'"):
        gpu_model("V100")
    with pytest.raises(UnknownProfileError, match=r"unknown profile '5g.40gb' on A100-40GB \(known: 1g.5gb"):
        gpu_model("A100-40GB").profile("5g.40gb")
    with pytest.raises(RlmigError, match=r"malformed instance '3g\.20gb'"):
        gpu_model("A100-40GB").instance("3g.20gb")
    with pytest.raises(RlmigError, match="malformed instance"):
        gpu_model("A100-40GB").instance("3g.20gb@-1")


@pytest.mark.parametrize(
    "specs",
    [
        ["7g.40gb@0"],
        ["4g.20gb@0", "3g.20gb@4"],
        ["3g.20gb@0", "3g.20gb@4"],
        ["2g.10gb@0", "2g.10gb@2", "2g.10gb@4", "1g.5gb@6"],
        ["1g.5gb@0", "1g.5gb@1", "1g.5gb@2", "1g.5gb@3", "1g.5gb@4", "1g.5gb@5", "1g.5gb@6"],
        ["1g.10gb@0", "1g.10gb@2", "1g.10gb@4", "1g.10gb@6"],
    ],
)
def test_valid_layouts(specs):
    a100 = gpu_model("A100-40GB")
    assert a100.why_invalid(a100.instances(specs)) is None
    assert len(a100.layout(specs)) == len(specs)


def test_two_3g_waste_one_compute_slice():
    layout = gpu_model("A100-40GB").layout(["3g.20gb@0", "3g.20gb@4"])
    assert layout.free_compute == 1
    assert layout.slot_mask == 0xFF


@pytest.mark.parametrize(
    ("specs", "reason"),
    [
        (["3g.20gb@2"], "3g.20gb cannot start at memory slot 2 (valid starts: 0, 4)"),
        (["1g.5gb@7"], "1g.5gb cannot start at memory slot 7"),
        (["4g.20gb@4"], "4g.20gb cannot start at memory slot 4 (valid starts: 0)"),
        (["3g.20gb@0", "4g.20gb@0"], "4g.20gb@0 overlaps 3g.20gb@0 on memory slots 0-3"),
        (["2g.10gb@2", "1g.5gb@3"], "1g.5gb@3 overlaps 2g.10gb@2 on memory slots 3"),
        (["1g.5gb@1", "1g.5gb@1"], "1g.5gb@1 overlaps 1g.5gb@1 on memory slots 1"),
        (["1g.5gb+me@0", "1g.5gb+me@1"], "2 x 1g.5gb+me exceeds its maximum count of 1"),
        (["4g.20gb@0", "1g.10gb@4", "1g.10gb@6", "1g.5gb@7"], "1g.5gb cannot start"),
        (["4g.20gb@0", "2g.10gb@4", "1g.10gb@6"], None),
    ],
)
def test_invalid_layouts_say_why(specs, reason):
    a100 = gpu_model("A100-40GB")
    got = a100.why_invalid(a100.instances(specs))
    if reason is None:
        assert got is None
    else:
        assert got is not None and got.startswith(reason)
        with pytest.raises(InvalidLayoutError, match="invalid layout on A100-40GB"):
            a100.layout(specs)


def test_compute_rule():
    # On the real 8- and 4-slot GPUs the valid starts already keep compute within the total (no
    # profile starts at slot 7), so the rule is exercised on a made-up GPU whose slots outnumber
    # its compute slices.
    one = Profile(id=1, name="1g.1gb", compute=1, slots=1, max_count=4, starts=(0, 1, 2, 3))
    odd = GpuModel("ODD", slots=4, compute_slices=3, profiles=[one], memory_gb=4)
    assert odd.why_invalid(odd.instances(["1g.1gb@0", "1g.1gb@1", "1g.1gb@2"])) is None
    reason = odd.why_invalid(odd.instances(["1g.1gb@0", "1g.1gb@1", "1g.1gb@2", "1g.1gb@3"]))
    assert reason == "compute slices sum to 4, over the 3 of ODD"
    assert len(odd.layouts(maximal=True)) == 4


def test_foreign_profile_is_rejected():
    a100 = gpu_model("A100-40GB")
    alien = Instance(gpu_model("A30-24GB").profile("1g.6gb"), 0)
    assert a100.why_invalid([alien]) == "unknown profile '1g.6gb' on A100-40GB"


def test_layout_operations():
    a100 = gpu_model("A100-40GB")
    layout = a100.layout(["4g.20gb@0"])
    assert layout.can_add(a100.instance("3g.20gb@4"))
    assert not layout.can_add(a100.instance("3g.20gb@0"))
    bigger = layout.plus(a100.instance("2g.10gb@4"))
    assert str(bigger) == "4g.20gb@0 2g.10gb@4"
    assert bigger.minus(a100.instance("4g.20gb@0")) == a100.layout(["2g.10gb@4"])
    with pytest.raises(InvalidLayoutError, match="not in layout"):
        bigger.minus(a100.instance("1g.5gb@6"))
    with pytest.raises(InvalidLayoutError, match="overlaps"):
        bigger.plus(a100.instance("1g.5gb@5"))
    assert str(a100.empty_layout()) == "(empty)"
    assert bigger.to_json() == [{"profile": "4g.20gb", "start": 0}, {"profile": "2g.10gb", "start": 4}]
    assert a100.layout(["2g.10gb@4", "4g.20gb@0"]) == bigger  # order does not matter
