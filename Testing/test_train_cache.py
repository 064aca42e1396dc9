"""Preprocessing cache and case lists: memory-mapped, keyed by settings and sources, same inverse as deployment."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegLib.apps.phantom import make_synthetic_case, write_synthetic_case
from StrokeSegLib.common.errors import InputFileError
from StrokeSegLib.common.geometry import Grid
from StrokeSegLib.io.imageio import read_image
from StrokeSegLib.preprocessing.prepare import prepare_case
from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig
from StrokeSegTrainLib.data_cache import build_entry, open_entry
from StrokeSegTrainLib.dataset import MissingMaskWarning, load_training_cases, read_case_csv


@pytest.fixture()
def case(tmp_path):
    synthetic = make_synthetic_case(seed=3, size=(32, 32, 20), spacing=(4.0, 4.0, 6.0))
    return write_synthetic_case(synthetic, tmp_path / "isles", "sub-c1_ses-0001")


def test_entry_contents_and_native_mapping(case, tmp_path) -> None:
    section = PreprocessConfig(target_spacing=(4.0, 4.0, 4.0))
    cached = open_entry(build_entry(case, tmp_path / "cache", section, "float16"))
    assert isinstance(cached.image, np.memmap) and cached.image.dtype == np.float16
    assert cached.mask.dtype == np.uint8 and cached.mask.shape == cached.image.shape[1:]
    assert np.array_equal(np.argwhere(cached.mask), cached.foreground)
    assert cached.foreground.shape[0] > 0
    dwi = read_image(case.dwi)
    prepared = prepare_case(dwi, read_image(case.adc, role="ADC"), section)
    assert cached.native_grid == prepared.native_grid and cached.network_grid == prepared.network_grid
    assert np.allclose(cached.image, prepared.image, atol=2e-2)  # float16 storage
    probability = np.random.default_rng(0).random(cached.mask.shape).astype(np.float32)
    ours = cached.to_native(probability)
    theirs = prepared.to_native(probability, interpolator="linear")
    assert Grid.of(ours) == Grid.of(theirs) == Grid.of(dwi)
    assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs))
    assert cached.native_mask.shape == cached.native_grid.shape and cached.native_mask.sum() > 0


def test_key_follows_settings_and_sources(case, tmp_path) -> None:
    cache = tmp_path / "cache"
    section = PreprocessConfig(target_spacing=(4.0, 4.0, 4.0))
    first = build_entry(case, cache, section)
    stamp = (first / "meta.json").stat().st_mtime_ns
    assert build_entry(case, cache, section) == first and (first / "meta.json").stat().st_mtime_ns == stamp
    changed = build_entry(case, cache, PreprocessConfig(target_spacing=(4.0, 4.0, 4.0), clip_percentiles=(1, 99)))
    assert changed != first and not first.exists(), "a stale entry must be removed"
    os.utime(case.mask, ns=(1, 1))  # the expert mask was replaced
    assert build_entry(case, cache, PreprocessConfig(target_spacing=(4.0, 4.0, 4.0), clip_percentiles=(1, 99))) \
        != changed
    assert len([p for p in (cache / case.case_id).iterdir()]) == 1


def test_case_lists_from_csv_and_root(case, tmp_path) -> None:
    csv = tmp_path / "isles" / "cases.csv"
    rel = lambda p: os.path.relpath(p, csv.parent)  # noqa: E731
    csv.write_text(f"case_id,dwi,adc,mask\nmine,{rel(case.dwi)},{rel(case.adc)},{rel(case.mask)}\n")
    (listed,) = read_case_csv(csv)
    assert listed.case_id == "mine" and listed.mask.samefile(case.mask)
    other = write_synthetic_case(make_synthetic_case(seed=4, size=(16, 16, 8)), tmp_path / "isles", "sub-c2")
    other.mask.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cases = load_training_cases(tmp_path / "isles")
    assert [c.case_id for c in cases] == ["sub-c1_ses-0001"]
    assert any(issubclass(w.category, MissingMaskWarning) for w in caught)
    csv.write_text("case_id,dwi,adc\nx,a,b\n")
    with pytest.raises(InputFileError, match="mask"):
        read_case_csv(csv)


@pytest.mark.realdata
def test_real_isles_cases_cache_with_lesion_volume_preserved(isles_root, tmp_path) -> None:
    """On the real scans (oblique 2 mm grids, ADC in two unit systems) the network-grid mask keeps the lesion volume."""
    cases = load_training_cases(isles_root)
    assert len(cases) == 3
    for case in cases:
        cached = open_entry(build_entry(case, tmp_path / "cache", PreprocessConfig(), "float16"))
        native_ml = cached.native_mask.sum() * cached.native_grid.voxel_volume_mm3 / 1000
        network_ml = cached.mask.sum() * cached.network_grid.voxel_volume_mm3 / 1000
        assert native_ml > 0 and abs(network_ml - native_ml) <= 0.25 * native_ml + 0.1, case.case_id
        inside = cached.brain[tuple(cached.foreground.T)]
        assert inside.mean() > 0.9, f"{case.case_id}: lesion voxels outside the brain mask"
        dwi_in_brain = np.asarray(cached.image)[0][cached.brain > 0]
        assert np.isfinite(cached.image).all() and abs(float(dwi_in_brain.mean())) < 0.2  # z-scored in the brain
