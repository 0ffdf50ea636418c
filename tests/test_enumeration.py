"""Layout enumeration: the published counts, and agreement with an independent brute force."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmig.geometry import gpu_model, gpu_models
from tests.bruteforce import brute_force_layouts

BASE_A100_40 = ["1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"]


def as_sets(layouts):
    return {frozenset((i.profile.name, i.start) for i in lay.instances) for lay in layouts}


def test_a100_40gb_counts_from_the_design():
    a100 = gpu_model("A100-40GB")
    maximal = a100.layouts(BASE_A100_40, maximal=True)
    assert len(maximal) == 19
    assert len({frozenset(lay.counts().items()) for lay in maximal}) == 14  # distinct profile mixes
    assert len(a100.layouts(BASE_A100_40)) == 297
    assert len(a100.layouts([*BASE_A100_40, "1g.10gb"], maximal=True)) == 78


def test_media_extension_profiles_only_when_asked():
    a100 = gpu_model("A100-40GB")
    assert not any(i.profile.media_extension for lay in a100.layouts() for i in lay)
    with_me = a100.layouts(media_extensions=True)
    assert any(i.profile.media_extension for lay in with_me for i in lay)
    assert any(i.profile.name == "1g.5gb+me" for lay in a100.layouts(["1g.5gb+me"]) for i in lay)


def test_layouts_are_unique_valid_and_ordered_by_compute():
    a100 = gpu_model("A100-80GB")
    found = a100.layouts(media_extensions=True)
    assert len(set(found)) == len(found)
    assert all(a100.why_invalid(lay.instances) is None for lay in found)
    computes = [lay.compute_used for lay in found]
    assert computes == sorted(computes, reverse=True)


@pytest.mark.parametrize("gpu", ["A100-40GB", "A30-24GB"])
def test_default_selection_matches_brute_force(gpu):
    model = gpu_model(gpu)
    profiles = list(model.base_profiles())
    assert as_sets(model.layouts()) == brute_force_layouts(model, profiles)
    assert as_sets(model.layouts(maximal=True)) == brute_force_layouts(model, profiles, maximal=True)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_profile_subset_matches_brute_force(data):
    gpu = data.draw(st.sampled_from(sorted(gpu_models())))
    model = gpu_model(gpu)
    profiles = data.draw(
        st.lists(st.sampled_from(model.profiles), min_size=1, unique=True).filter(
            lambda ps: sum(len(p.starts) for p in ps) <= 16
        )
    )
    maximal = data.draw(st.booleans())
    got = model.layouts(profiles, maximal=maximal)
    assert as_sets(got) == brute_force_layouts(model, profiles, maximal=maximal)
