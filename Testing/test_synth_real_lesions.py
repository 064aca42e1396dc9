"""Real lesion masks in generated brains: the compact library (build, save, load without pickle, bundled size and
licence), placement (inside the brain, in the mapped territory, mirrored, with the infarct's diffusion signature),
``--lesions DIR`` for a user's own masks, generator settings from JSON, and ADCs delivered on another grid."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from StrokeSegLib.common.geometry import resample_to_grid
from StrokeSegTrainLib.cli import main as train_main
from StrokeSegTrainLib.synth.dataset import case_paths
from StrokeSegTrainLib.synth.generator import SynthConfig, generate_case
from StrokeSegTrainLib.synth.lesion_library import BUNDLED_LIBRARY, build_library, load_library
from StrokeSegTrainLib.synth.real_lesions import model_to_mni

REAL = {"p_real_lesions": 1.0, "p_no_lesion": 0.0, "p_adc_other_grid": 0.0}


def _mni_mask(path: Path, centre_mm: tuple[float, float, float], radius_mm: float, second=None) -> Path:
    """A binary mask on a 2 mm MNI-like grid (LPS, origin as the SOOP grid) with one or two balls."""
    image = sitk.Image([80, 96, 70], sitk.sitkUInt8)
    image.SetSpacing((2.0, 2.0, 2.0))
    image.SetOrigin((-78.0, -112.0, -50.0))
    arr = np.zeros(image.GetSize()[::-1], np.uint8)
    zz, yy, xx = np.indices(arr.shape)
    for centre, radius in [(centre_mm, radius_mm)] + ([second] if second else []):
        idx = image.TransformPhysicalPointToContinuousIndex(centre)
        arr[(xx - idx[0]) ** 2 + (yy - idx[1]) ** 2 + (zz - idx[2]) ** 2 <= (radius / 2.0) ** 2] = 1
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path))
    return path


def test_library_keeps_each_mask_exactly_and_loads_without_pickle(tmp_path: Path):
    folder = tmp_path / "masks"
    folder.mkdir()
    _mni_mask(folder / "a.nii.gz", (30.0, 0.0, 10.0), 8.0)
    _mni_mask(folder / "b.nii.gz", (-20.0, 30.0, 0.0), 4.0, second=((-20.0, 50.0, 0.0), 4.0))
    empty = sitk.Image([10, 10, 10], sitk.sitkUInt8)
    sitk.WriteImage(empty, str(folder / "c_empty.nii.gz"))
    library = build_library(folder)
    assert len(library) == 2  # the empty mask is skipped
    path = library.save(tmp_path / "lib.npz")
    again = load_library(path)
    for i, name in enumerate(("a.nii.gz", "b.nii.gz")):
        source = sitk.ReadImage(str(folder / name))
        full = sitk.GetArrayFromImage(source)
        crop = again.mask(i)
        assert crop.sum() == full.sum() and crop.shape == tuple(again.shapes[i])
        # the crop's first voxel sits where the bounding box starts in physical space, and holds the same voxels
        lo = np.argwhere(full).min(axis=0)
        assert np.allclose(again.origins[i], source.TransformIndexToPhysicalPoint([int(v) for v in lo[::-1]]))
        hi = lo + np.array(crop.shape)
        assert np.array_equal(crop, full[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
        assert again.volume_ml[i] == pytest.approx(full.sum() * 8.0 / 1000.0)
    assert (ndimage.label(again.mask(1), structure=np.ones((3, 3, 3)))[1]) == 2


def test_folder_without_lesions_is_refused(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no lesion masks"):
        build_library(tmp_path)
    sitk.WriteImage(sitk.Image([8, 8, 8], sitk.sitkUInt8), str(tmp_path / "empty.nii.gz"))
    with pytest.raises(ValueError, match="every lesion mask is empty"):
        build_library(tmp_path)


def test_bundled_library_is_compact_complete_and_carries_its_licence():
    assert BUNDLED_LIBRARY.stat().st_size <= 10 * 1024 * 1024
    licence = BUNDLED_LIBRARY.with_name("LICENSE-SOOP.txt").read_text()
    assert "BSD 2-Clause" in licence and "Chris Rorden" in licence
    library = load_library(BUNDLED_LIBRARY)
    assert len(library) == 1448
    # the source's published percentiles (soop-lesions-mni README): median 12.6 mL, 5th 0.30, 95th 196
    assert np.percentile(library.volume_ml, 50) == pytest.approx(12.6, abs=0.1)
    assert np.percentile(library.volume_ml, 5) == pytest.approx(0.30, abs=0.02)
    # every territory is represented, MCA the most common as in any stroke series
    counts = np.bincount(library.territory, minlength=5)
    assert counts[1:].min() > 50 and counts.argmax() == 2


def test_mirror_swaps_hemispheres_and_model_midline_is_mni_midline():
    x, y, z = (np.array([v], np.float32) for v in (25.0, 10.0, 5.0))
    left, right = model_to_mni(x, y, z, False), model_to_mni(x, y, z, True)
    assert left[0][0] > 20 and right[0][0] == pytest.approx(-left[0][0])
    assert left[1][0] == pytest.approx(right[1][0])
    mid = model_to_mni(*(np.array([v], np.float32) for v in (0.0, 0.0, 0.0)), False)
    assert abs(mid[0][0]) < 2.0


@pytest.fixture(scope="module")
def real_cases():
    config = SynthConfig(**REAL, p_stripped=1.0)
    return [generate_case(2051, i, config) for i in range(2)]


def test_real_lesion_lies_in_the_brain_with_an_infarct_signature(real_cases):
    for case in real_cases:
        assert case.info["pattern"] == "real" and case.info["lesions"][0]["kind"] == "real"
        mask = sitk.GetArrayFromImage(case.mask) > 0
        assert mask.sum() >= 3, case.info["lesions"]
        brain = case.acquired.brain_mask
        assert (mask & ~brain).sum() == 0
        dwi = sitk.GetArrayFromImage(case.dwi).astype(float)
        adc = sitk.GetArrayFromImage(case.adc).astype(float) * case.info["adc_units"]
        normal = brain & ~ndimage.binary_dilation(mask, iterations=3) & (adc > 0.2e-3) & (adc < 1.5e-3)
        assert np.median(adc[mask]) < 0.85 * np.median(adc[normal])
        assert np.median(dwi[mask]) > 1.2 * np.median(dwi[normal])


def test_real_lesion_is_in_the_territory_it_was_drawn_in(real_cases):
    """The lesion's anatomical centre maps (model frame -> MNI, mirror undone) into the source mask's box."""
    library = load_library(BUNDLED_LIBRARY)
    names = list(library.names)
    for case in real_cases:
        info = case.info["lesions"][0]
        i = names.index(info["source"][0])
        lo, hi = library.physical_box(i)
        assert info["volume_ml"] > 0 and info["territory"] in ("ACA", "MCA", "PCA", "vertebrobasilar")
        # mirrored lesions change hemisphere (x > 0 is left in both MNI-LPS and the generator's anatomical frame)
        centre_x = 0.5 * (lo[0] + hi[0])
        side = np.sign(centre_x) * (-1 if info["mirrored"] else 1)
        if abs(centre_x) > 15:  # a clearly lateral source lesion lands on the expected side
            assert np.sign(info["centre_anatomical_mm"][0]) == side, info


def test_user_masks_folder_is_used_by_the_cli(tmp_path: Path):
    folder = tmp_path / "mine"
    folder.mkdir()
    _mni_mask(folder / "my_patient.nii.gz", (35.0, 10.0, 10.0), 12.0)
    settings = tmp_path / "synth.json"
    settings.write_text(json.dumps(REAL))
    out = tmp_path / "tree"
    assert train_main(["synth", "--out", str(out), "--cases", "1", "--seed", "3", "--config", str(settings),
                       "--lesions", str(folder), "--quiet"]) == 0
    manifest = json.loads((out / "synth_manifest.json").read_text())
    assert manifest["cases"][0]["lesions"][0]["source"] == ["my_patient"]
    mask = sitk.ReadImage(str(case_paths(out, manifest["cases"][0]["case_id"])["mask"]))
    assert sitk.GetArrayViewFromImage(mask).sum() > 0


def test_a_masks_folder_is_read_once_per_process(tmp_path: Path, monkeypatch):
    from StrokeSegTrainLib.synth import lesion_library

    folder = tmp_path / "mine"
    folder.mkdir()
    _mni_mask(folder / "one.nii.gz", (35.0, 10.0, 10.0), 12.0)
    builds = []
    real_build = lesion_library.build_library
    monkeypatch.setattr(lesion_library, "build_library", lambda *a: builds.append(a) or real_build(*a))
    config = SynthConfig(**REAL, lesion_library=str(folder))
    cases = [generate_case(5, i, config) for i in range(2)]
    assert all(c.info["lesions"][0]["source"] == ["one"] for c in cases)
    assert len(builds) == 1


@pytest.mark.parametrize("content, message", [({"p_real": 0.5}, "unknown generator settings"),
                                              ({"p_real_lesions": 1.5}, "between 0 and 1"),
                                              ([0.5], "JSON object")])
def test_bad_generator_settings_are_refused(tmp_path: Path, capsys, content, message):
    settings = tmp_path / "synth.json"
    settings.write_text(json.dumps(content))
    assert train_main(["synth", "--out", str(tmp_path / "o"), "--cases", "1", "--seed", "1", "--config",
                       str(settings), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and str(settings) in err
    assert not (tmp_path / "o").exists()


def test_missing_lesions_folder_is_refused(tmp_path: Path, capsys):
    assert train_main(["synth", "--out", str(tmp_path / "o"), "--cases", "1", "--seed", "1",
                       "--lesions", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "lesion masks not found" in capsys.readouterr().err


def test_adc_on_another_grid_covers_the_dwi_and_resamples_back():
    same = generate_case(2052, 0, SynthConfig(p_adc_other_grid=0.0, p_no_lesion=0.0))
    other = generate_case(2052, 0, SynthConfig(p_adc_other_grid=1.0, p_no_lesion=0.0))
    grid = other.info["adc_other_grid"]
    assert grid is not None and same.info["adc_other_grid"] is None
    assert other.adc.GetSpacing() == pytest.approx((grid["spacing_mm"],) * 3, abs=1e-3)
    assert not np.allclose(other.adc.GetDirection(), other.dwi.GetDirection())
    # DWI and mask are untouched; the ADC brought back onto the DWI grid matches the original inside the brain
    assert np.array_equal(sitk.GetArrayFromImage(same.dwi), sitk.GetArrayFromImage(other.dwi))
    back = sitk.GetArrayFromImage(resample_to_grid(sitk.Cast(other.adc, sitk.sitkFloat32), other.dwi))
    original = sitk.GetArrayFromImage(same.adc).astype(np.float32)
    brain = ndimage.binary_erosion(same.acquired.brain_mask, iterations=3)
    r = np.corrcoef(back[brain], original[brain])[0, 1]
    assert r > 0.8
