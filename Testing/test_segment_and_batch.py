"""`strokeseg segment` and `strokeseg batch` end to end: outputs on the DWI's exact grid, bad cases skipped."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegLib.apps.phantom import make_synthetic_case, write_synthetic_case
from StrokeSegLib.cli import main as strokeseg
from StrokeSegLib.common.geometry import Grid


def _write_case(folder: Path, seed: int, **kwargs: object) -> tuple[Path, Path, sitk.Image]:
    case = make_synthetic_case(seed=seed, size=(40, 36, 20), **kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    dwi, adc = folder / "dwi.nii.gz", folder / "adc.nrrd"
    sitk.WriteImage(case.dwi, str(dwi))
    sitk.WriteImage(case.adc, str(adc))
    return dwi, adc, case.dwi


def test_segment_writes_mask_probability_and_report_on_the_dwi_grid(tmp_path: Path, tiny_model: Path) -> None:
    dwi_path, adc_path, dwi = _write_case(tmp_path / "in", seed=3, oblique=True, adc_shift_mm=(1.0, -1.0, 0.5))
    out, prob, rep = tmp_path / "out" / "mask.nii.gz", tmp_path / "out" / "prob.nii.gz", tmp_path / "out" / "r.json"
    status = strokeseg(["segment", "--dwi", str(dwi_path), "--adc", str(adc_path), "--out", str(out),
                        "--prob", str(prob), "--report", str(rep), "--model", str(tiny_model), "--threshold", "0.3"])
    assert status == 0
    mask = sitk.ReadImage(str(out))
    probability = sitk.ReadImage(str(prob))
    reference = Grid.of(sitk.ReadImage(str(dwi_path)))
    assert Grid.of(mask) == reference
    assert Grid.of(probability) == reference
    assert mask.GetPixelID() == sitk.sitkUInt8
    # Not merely close: the NIfTI affines are the input's own, as tools that compare headers exactly require.
    assert np.array_equal(nib.load(str(out)).affine, nib.load(str(dwi_path)).affine)
    assert np.array_equal(nib.load(str(out)).header.get_qform(), nib.load(str(dwi_path)).header.get_qform())
    report = json.loads(rep.read_text())
    voxels = int(sitk.GetArrayViewFromImage(mask).sum())
    assert report["lesion_volume_ml"] == pytest.approx(voxels * np.prod(dwi.GetSpacing()) / 1000.0)
    assert report["lesion_count"] == len(report["lesions"])
    assert report["model_id"] == "tiny-test"
    assert set(report["timings"]) >= {"read_s", "prepare_s", "predict_s", "postprocess_s", "write_s", "total_s"}
    # The mask is the thresholded probability inside the brain: it can never exceed it.
    p = sitk.GetArrayViewFromImage(probability)
    m = sitk.GetArrayViewFromImage(mask).astype(bool)
    assert np.all(p[m] >= 0.3 - 1e-6)


def test_segment_reports_a_missing_file_clearly(tmp_path: Path, tiny_model: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    dwi_path, _, _ = _write_case(tmp_path, seed=1)
    status = strokeseg(["segment", "--dwi", str(dwi_path), "--adc", str(tmp_path / "nope.nii.gz"),
                        "--out", str(tmp_path / "m.nii.gz"), "--model", str(tiny_model)])
    assert status == 2
    assert "nope.nii.gz" in capsys.readouterr().err
    assert not (tmp_path / "m.nii.gz").exists()


def test_batch_skips_a_corrupt_case_and_resumes(tmp_path: Path, tiny_model: Path) -> None:
    root = tmp_path / "isles"
    for i, layout in enumerate(("zenodo", "zenodo", "zenodo")):
        case = make_synthetic_case(seed=10 + i, size=(32, 32, 16), oblique=True)
        write_synthetic_case(case, root, f"sub-b{i:03d}_ses-0001", layout=layout)
    corrupt = next(root.glob("sub-b001/ses-0001/dwi/*_adc.nii.gz"))
    corrupt.write_bytes(b"this is not an image")
    out = tmp_path / "pred"
    status = strokeseg(["batch", str(root), "--out", str(out), "--model", str(tiny_model)])
    assert status == 1  # one case failed
    rows = {r["case_id"]: r for r in csv.DictReader((out / "volumes.csv").read_text().splitlines())}
    assert rows["sub-b001_ses-0001"]["status"] == "failed"
    assert "adc" in rows["sub-b001_ses-0001"]["error"]
    for ok in ("sub-b000_ses-0001", "sub-b002_ses-0001"):
        assert rows[ok]["status"] == "ok"
        written = sitk.ReadImage(str(out / f"{ok}_msk.nii.gz"))
        source = sitk.ReadImage(str(next(root.glob(f"{ok.split('_')[0]}/ses-0001/dwi/*_dwi.nii.gz"))))
        assert Grid.of(written) == Grid.of(source)
    assert not (out / "sub-b001_ses-0001_msk.nii.gz").exists()

    before = (out / "sub-b000_ses-0001_msk.nii.gz").stat().st_mtime_ns
    status = strokeseg(["batch", str(root), "--out", str(out), "--model", str(tiny_model), "--resume"])
    assert status == 1
    rows = {r["case_id"]: r for r in csv.DictReader((out / "volumes.csv").read_text().splitlines())}
    assert rows["sub-b000_ses-0001"]["status"] == "skipped"
    assert rows["sub-b000_ses-0001"]["lesion_volume_ml"] != ""
    assert (out / "sub-b000_ses-0001_msk.nii.gz").stat().st_mtime_ns == before


@pytest.mark.realdata
def test_segment_real_isles_case_lands_on_its_grid(isles_root: Path, tmp_path: Path, tiny_model: Path) -> None:
    dwi = isles_root / "sub-strokecase0009/ses-0001/dwi/sub-strokecase0009_ses-0001_dwi.nii.gz"
    adc = dwi.with_name("sub-strokecase0009_ses-0001_adc.nii.gz")
    out = tmp_path / "mask.nii.gz"
    argv = ["segment", "--dwi", str(dwi), "--adc", str(adc), "--out", str(out), "--model", str(tiny_model)]
    assert strokeseg(argv) == 0
    assert Grid.of(sitk.ReadImage(str(out))) == Grid.of(sitk.ReadImage(str(dwi)))
    assert np.array_equal(nib.load(str(out)).affine, nib.load(str(dwi)).affine)


@pytest.mark.parametrize("adc_mode", ["zscore", "physical"])
def test_the_model_file_decides_how_the_adc_is_normalised(tmp_path: Path, adc_mode: str, make_tiny_model) -> None:
    """A model trained on physical ADC must see physical ADC at deployment: the same physics in another unit gives
    the same result, but a 20 % different ADC does not -- while a z-score model cannot tell the two apart."""
    from StrokeSegLib.engine.segmentation import SegmentOptions, segment_images
    from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig

    model = make_tiny_model(tmp_path / f"{adc_mode}.safetensors", f"tiny-{adc_mode}", seed=1,
                            preprocess=PreprocessConfig(target_spacing=(3.0, 3.0, 3.0), adc_normalization=adc_mode))
    case = make_synthetic_case(seed=4, size=(40, 36, 20), adc_units=1e-3)
    options = SegmentOptions(tta=False)

    def probability(adc: sitk.Image) -> np.ndarray:
        return sitk.GetArrayFromImage(segment_images(case.dwi, adc, model, options).probability)

    base = probability(case.adc)
    np.testing.assert_allclose(probability(case.adc * 1000.0), base, atol=1e-5)  # 10^-6 mm^2/s, same physics
    changed = probability(case.adc * 1.2)
    if adc_mode == "physical":
        assert np.abs(changed - base).max() > 1e-3
    else:
        np.testing.assert_allclose(changed, base, atol=1e-5)
