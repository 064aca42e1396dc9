"""Patch sampler: foreground oversampling, lesion-free background patches, padding, resumable state, rank split."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from StrokeSegTrainLib.sampler import PatchSampler, crop_with_padding


@dataclass
class FakeCase:
    image: np.ndarray
    mask: np.ndarray
    foreground: np.ndarray
    brain_bbox: tuple


def _case(shape=(40, 48, 48), lesion=(slice(5, 8), slice(6, 9), slice(30, 33))) -> FakeCase:
    mask = np.zeros(shape, np.uint8)
    mask[lesion] = 1
    image = np.stack([(np.arange(np.prod(shape)) % 1000).astype(np.float32).reshape(shape), mask.astype(np.float32)])
    return FakeCase(image.astype(np.float16), mask, np.argwhere(mask).astype(np.int32), ((0, 0, 0), shape))


def _has_lesion(sampler: PatchSampler, epochs: int) -> list[bool]:
    found = []
    for _ in range(epochs):
        for planned in sampler.plan_epoch(10):
            _, mask = sampler.make_batch(planned)
            found.extend(bool(m.any()) for m in mask)
    return found


def test_foreground_fraction_and_lesion_free_background() -> None:
    cases = [_case()]
    always = PatchSampler(cases, (16, 16, 16), 2, foreground_fraction=1.0, seed=0)
    assert all(_has_lesion(always, 3))
    never = PatchSampler(cases, (16, 16, 16), 2, foreground_fraction=0.0, seed=0)
    hits = _has_lesion(never, 5)
    assert sum(hits) < 0.3 * len(hits), "background patches must not be forced onto the lesion"
    third = PatchSampler(cases, (16, 16, 16), 2, foreground_fraction=0.33, seed=0)
    plans = [d.foreground for _ in range(20) for b in third.plan_epoch(10) for d in b.draws]
    assert 0.25 < np.mean(plans) < 0.41


def test_patch_content_and_dtype() -> None:
    case = _case()
    sampler = PatchSampler([case], (16, 16, 16), 3, foreground_fraction=1.0, seed=1)
    image, mask = sampler.make_batch(sampler.plan_epoch(1)[0])
    assert image.shape == (3, 2, 16, 16, 16) and image.dtype == np.float32
    assert mask.shape == (3, 1, 16, 16, 16) and mask.dtype == np.uint8
    # The image's second channel is the mask: the patch was cut at the same place in both.
    assert np.array_equal(image[:, 1:2] > 0.5, mask.astype(bool))


def test_volume_smaller_than_patch_is_padded() -> None:
    case = _case(shape=(6, 10, 12), lesion=(slice(2, 3), slice(4, 5), slice(5, 6)))
    sampler = PatchSampler([case], (16, 16, 16), 2, foreground_fraction=0.5, seed=2)
    for planned in sampler.plan_epoch(5):
        image, mask = sampler.make_batch(planned)
        assert image.shape == (2, 2, 16, 16, 16)
        assert mask.sum() == 2  # the whole small volume (and its one lesion voxel) is inside every patch
    padded = crop_with_padding(np.ones((2, 3, 3)), (-1, -1, -1), (4, 5, 5))
    assert padded.sum() == 18 and padded[0].sum() == 0


def test_state_dict_resumes_the_same_stream() -> None:
    cases = [_case(), _case(lesion=(slice(20, 25), slice(20, 25), slice(20, 25)))]
    a = PatchSampler(cases, (16, 16, 16), 2, seed=3)
    a.plan_epoch(4)
    state = a.state_dict()
    expected = a.plan_epoch(4)
    b = PatchSampler(cases, (16, 16, 16), 2, seed=99)
    b.load_state_dict(state)
    assert b.plan_epoch(4) == expected


def test_ranks_get_disjoint_shares_and_prefetch_keeps_order() -> None:
    cases = [_case()]
    rank0 = PatchSampler(cases, (16, 16, 16), 2, seed=4, rank=0, world_size=2).plan_epoch(6)
    rank1 = PatchSampler(cases, (16, 16, 16), 2, seed=4, rank=1, world_size=2).plan_epoch(6)
    seeds0 = {d.seed for b in rank0 for d in b.draws}
    seeds1 = {d.seed for b in rank1 for d in b.draws}
    assert len(seeds0) == 12 and not seeds0 & seeds1
    sampler = PatchSampler(cases, (16, 16, 16), 2, seed=5)
    plan = sampler.plan_epoch(5)
    direct = [sampler.make_batch(p)[0] for p in plan]
    threaded = [image for _, image, _ in sampler.iterate(plan, prefetch=2)]
    assert all(np.array_equal(x, y) for x, y in zip(direct, threaded)) and len(threaded) == 5


def _big_and_tiny_lesion_case() -> FakeCase:
    """A 1,000-voxel infarct and a single-voxel embolus too far apart to share an 8-voxel patch."""
    shape = (40, 40, 40)
    mask = np.zeros(shape, np.uint8)
    mask[2:12, 2:12, 2:12] = 1
    mask[34, 34, 34] = 1
    image = mask[None].astype(np.float32)
    image[0, 34, 34, 34] = 2.0                 # marks the embolus in the image channel
    return FakeCase(image, mask, np.argwhere(mask).astype(np.int32), ((0, 0, 0), shape))


def _share_with_tiny_lesion(sampling: str) -> float:
    sampler = PatchSampler([_big_and_tiny_lesion_case()], (8, 8, 8), 4, foreground_fraction=1.0, seed=3,
                           foreground_sampling=sampling)
    tiny = []
    for planned in sampler.plan_epoch(100):
        image, mask = sampler.make_batch(planned)
        assert all(m.any() for m in mask), "every foreground patch holds lesion"
        tiny.extend(bool((i == 2.0).any()) for i in image)
    return float(np.mean(tiny))


def test_lesion_balanced_sampling_shows_a_tiny_lesion_as_often_as_a_large_one() -> None:
    assert _share_with_tiny_lesion("voxel") < 0.02
    assert 0.4 < _share_with_tiny_lesion("lesion") < 0.6


def test_lesion_balanced_sampling_groups_voxels_by_26_connected_lesion() -> None:
    from StrokeSegTrainLib.sampler import lesion_groups

    mask = np.zeros((6, 6, 6), np.uint8)
    mask[1, 1, 1] = mask[2, 2, 2] = 1          # corner neighbours: one lesion at 26-connectivity
    mask[4, 4, 4] = 1
    foreground = np.argwhere(mask).astype(np.int32)
    groups = lesion_groups(mask, foreground)
    assert sorted(len(g) for g in groups) == [1, 2]
    assert sorted(int(i) for g in groups for i in g) == [0, 1, 2]
    assert lesion_groups(np.zeros_like(mask), np.zeros((0, 3), np.int32)) == []


def test_unknown_foreground_sampling_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="foreground_sampling"):
        PatchSampler([_case()], (16, 16, 16), 2, foreground_sampling="component")
