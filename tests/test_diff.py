"""Transitions between layouts: every intermediate state valid, kept instances untouched."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmig.errors import RlmigError
from rlmig.geometry import diff_layouts, gpu_model, gpu_models


def every_layout(gpu_name):
    model = gpu_model(gpu_name)
    return [model.empty_layout(), *model.layouts(media_extensions=True)]


@st.composite
def layout_pairs(draw):
    gpu = draw(st.sampled_from(sorted(gpu_models())))
    layouts = every_layout(gpu)
    return draw(st.sampled_from(layouts)), draw(st.sampled_from(layouts))


@settings(max_examples=400, deadline=None)
@given(layout_pairs())
def test_every_intermediate_state_is_valid_and_ends_at_the_target(pair):
    current, target = pair
    diff = diff_layouts(current, target)
    state = current
    for step in diff.steps:
        if step.op == "create":
            assert state.can_add(step.instance)
            state = state.gpu.layout([*state.instances, step.instance])
        else:
            assert step.instance in state.instances
            state = state.gpu.layout([i for i in state.instances if i != step.instance])
        assert state.gpu.why_invalid(state.instances) is None
        assert set(diff.keep) <= set(state.instances)  # kept instances are never touched
    assert state == target
    assert list(diff.states())[-1:] in ([target], [])
    assert set(diff.keep) == set(current.instances) & set(target.instances)
    assert set(diff.destroy) == set(current.instances) - set(target.instances)
    assert set(diff.create) == set(target.instances) - set(current.instances)


def test_creation_comes_first_where_there_is_room():
    a100 = gpu_model("A100-80GB")
    current = a100.layout(["3g.40gb@0"])
    target = a100.layout(["2g.20gb@0", "1g.10gb@2", "3g.40gb@4"])
    steps = [str(s) for s in diff_layouts(current, target).steps]
    assert steps == ["create 3g.40gb@4", "destroy 3g.40gb@0", "create 2g.20gb@0", "create 1g.10gb@2"]


def test_identical_layouts_need_no_step():
    a100 = gpu_model("A100-80GB")
    layout = a100.layout(["4g.40gb@0", "3g.40gb@4"])
    diff = diff_layouts(layout, layout)
    assert diff.steps == () and diff.keep == layout.instances


def test_destroys_the_instance_that_unblocks_creation():
    a100 = gpu_model("A100-40GB")
    current = a100.layout(["2g.10gb@0", "2g.10gb@2", "2g.10gb@4", "1g.5gb@6"])
    target = a100.layout(["2g.10gb@0", "2g.10gb@2", "3g.20gb@4"])
    steps = [str(s) for s in diff_layouts(current, target).steps]
    assert steps == ["destroy 2g.10gb@4", "destroy 1g.5gb@6", "create 3g.20gb@4"]


def test_layouts_of_different_gpus_cannot_be_diffed():
    with pytest.raises(RlmigError, match="cannot diff a A100-40GB layout against a A30-24GB"):
        diff_layouts(gpu_model("A100-40GB").empty_layout(), gpu_model("A30-24GB").empty_layout())
