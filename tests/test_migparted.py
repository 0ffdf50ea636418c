"""nvidia-mig-parted configs: export, read back, and one-line errors for malformed files."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmig.errors import ConfigError, RlmigError
from rlmig.geometry import gpu_model
from rlmig.migparted import dump_mig_parted, from_mig_parted, to_mig_parted

A100 = gpu_model("A100-80GB")


def test_export_has_one_device_entry_per_gpu():
    doc = to_mig_parted([A100.layout(["4g.40gb@0", "3g.40gb@4"]), None, A100.layout(["1g.10gb@0"] * 1)])
    assert doc["version"] == "v1"
    entries = doc["mig-configs"]["rlmig"]
    assert entries == [
        {"devices": [0], "mig-enabled": True, "mig-devices": {"4g.40gb": 1, "3g.40gb": 1}},
        {"devices": [1], "mig-enabled": False},
        {"devices": [2], "mig-enabled": True, "mig-devices": {"1g.10gb": 1}},
    ]
    assert yaml.safe_load(dump_mig_parted({3: None}, "night")) == {
        "version": "v1",
        "mig-configs": {"night": [{"devices": [3], "mig-enabled": False}]},
    }


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.sampled_from(A100.layouts(media_extensions=True))), min_size=1, max_size=8
    )
)
def test_round_trip_keeps_the_profile_counts(layouts):
    back = from_mig_parted(dump_mig_parted(layouts), A100)
    assert sorted(back) == list(range(len(layouts)))
    for index, layout in enumerate(layouts):
        if layout is None:
            assert back[index] is None
        else:
            assert back[index] is not None and back[index].counts() == layout.counts()


def test_read_back_places_counts_to_leave_room():
    doc = {
        "version": "v1",
        "mig-configs": {
            "c": [
                {"devices": "all", "mig-enabled": True, "mig-devices": {"1g.10gb": 1}},
            ]
        },
    }
    layouts = from_mig_parted(doc, A100, gpu_count=2)
    assert set(layouts) == {0, 1}
    # A 1g at slot 0 would block the only 4g placement; the reader keeps slot 0 free.
    assert layouts[0] is not None and layouts[0].can_add(A100.instance("4g.40gb@0"))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("version: v2\nmig-configs: {}", "version must be 'v1'"),
        ("[1, 2]", "must be a mapping"),
        ("version: v1\nmig-configs: {}", "'mig-configs' must be a non-empty mapping"),
        (
            "version: v1\nmig-configs: {a: [{devices: [0], mig-enabled: false}],"
            " b: [{devices: [0], mig-enabled: false}]}",
            "holds several configs; name one of: a, b",
        ),
        ("version: v1\nmig-configs: {a: {}}", "mig-configs.a must be a list"),
        (
            "version: v1\nmig-configs: {a: [{devices: [0]}]}",
            "mig-configs.a[0].mig-enabled must be true or false",
        ),
        (
            "version: v1\nmig-configs: {a: [{devices: all, mig-enabled: false}]}",
            "the GPU count must be given",
        ),
        ("version: v1\nmig-configs: {a: [{devices: [x], mig-enabled: false}]}", "'x' is not a GPU index"),
        ("version: v1\nmig-configs: {a: [{devices: [0, 0], mig-enabled: false}]}", "lists a GPU twice"),
        (
            "version: v1\nmig-configs: {a: [{devices: [0], mig-enabled: false},"
            " {devices: [0], mig-enabled: true, mig-devices: {}}]}",
            "mig-configs.a[1].devices: GPU 0 is already configured",
        ),
        (
            "version: v1\nmig-configs: {a: [{devices: [0], mig-enabled: true, mig-devices: {5g.50gb: 1}}]}",
            "mig-configs.a[0].mig-devices: unknown profile '5g.50gb' on A100-80GB",
        ),
        (
            "version: v1\nmig-configs: {a: [{devices: [0], mig-enabled: true, mig-devices: {4g.40gb: -1}}]}",
            "4g.40gb: count must be a non-negative integer",
        ),
        (
            "version: v1\nmig-configs: {a: [{devices: [0], mig-enabled: true, mig-devices: {4g.40gb: 2}}]}",
            "no valid placement of 2 x 4g.40gb on A100-80GB",
        ),
        ("version: v1\nmig-configs: [", "not valid YAML"),
        # What mig-parted's own parser (api/spec/v1) rejects:
        ("version: v1\nmig-configs: {a: []}", "mig-configs.a: at least one device entry is required"),
        ("version: v1\nmig-config: {}", "unexpected field 'mig-config'"),
        (
            "version: v1\nmig-configs: {a: [{devices: [0], mig-enabled: false, mig-device: {}}]}",
            "mig-configs.a[0]: unexpected field 'mig-device'",
        ),
        ("version: v1\nmig-configs: {a: [{mig-enabled: false}]}", "missing required field 'devices'"),
        (
            "version: v1\nmig-configs: {a: [{devices: [0], mig-enabled: true}]}",
            "mig-devices is required when mig-enabled is true",
        ),
        (
            "version: v1\nmig-configs: {a: [{devices: [0], mig-enabled: false, mig-devices: {1g.10gb: 1}}]}",
            "mig-devices given while mig-enabled is false",
        ),
        (
            "version: v1\nmig-configs: {a: [{devices: [0], mig-enabled: true, mig-devices: {1g.10gb: 0}}]}",
            "mig-configs.a[0].mig-devices: all counts are 0",
        ),
        (
            "version: v1\nmig-configs: {a: [{devices: [0], device-filter: '0x20B210DE',"
            " mig-enabled: false}]}",
            "has a device-filter: the GPUs' PCI device ID must be given",
        ),
    ],
)
def test_malformed_configs_get_one_line_errors(doc, message):
    with pytest.raises(ConfigError) as caught:
        from_mig_parted(doc, A100)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_gpu_beyond_the_node_is_refused():
    doc = "version: v1\nmig-configs: {a: [{devices: [4], mig-enabled: false}]}"
    with pytest.raises(ConfigError, match="GPU 4 does not exist"):
        from_mig_parted(doc, A100, gpu_count=2)
    with pytest.raises(ConfigError, match="has no config 'b'"):
        from_mig_parted(doc, A100, config_name="b")


def test_device_filters_select_the_entries_for_this_gpu_model():
    doc = """
version: v1
mig-configs:
  mixed:
    - devices: all
      device-filter: ["0x20B010DE", "0x20B210DE"]
      mig-enabled: true
      mig-devices: {3g.40gb: 2}
    - devices: all
      device-filter: "0x233010DE"
      mig-enabled: false
"""
    a100 = from_mig_parted(doc, A100, gpu_count=2, device_id="0x20b210de")
    assert [str(layout) for layout in a100.values()] == ["3g.40gb@0 3g.40gb@4"] * 2
    other = from_mig_parted(doc, A100, gpu_count=2, device_id="0x233010DE")
    assert other == {0: None, 1: None}
    with pytest.raises(RlmigError, match="needs at least one GPU"):
        to_mig_parted([])
