"""Hostile and mistaken inputs, one table row each, with the exact outcome: an error naming the file, or the right
result.

Issue 16: a measurement tool must never turn garbage into a plausible lesion volume. Rows use small generated cases
(``make_synthetic_case``) so they run everywhere; the rows at the end repeat the mix-ups on the real scans in
``../shared/data`` and skip without them. Read-completeness rows write real files (NIfTI, NRRD, MetaImage) and cut or
pad them; plausibility rows call the one segmentation path with a tiny model (a refusal happens before the network).
"""
from __future__ import annotations

import csv
import gzip
import json
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from StrokeSegLib.apps.phantom import B_VALUE, make_synthetic_case
from StrokeSegLib.cli import main as strokeseg
from StrokeSegLib.common.atomic import atomic_path
from StrokeSegLib.common.errors import ImplausibleInputError, InputFileError, ModelFileError, StrokeSegError
from StrokeSegLib.engine import model_registry
from StrokeSegLib.engine.model_file import load_model, read_metadata
from StrokeSegLib.engine.segmentation import SegmentOptions, segment_files, segment_images
from StrokeSegLib.evaluation.scoring import evaluate
from StrokeSegLib.io.imageio import read_image, read_mask
from StrokeSegLib.preprocessing import input_checks

SIZE = (40, 36, 20)  # x, y, z voxels at 1.5 x 1.5 x 3 mm: a 60 mm phantom, fast


def _case(seed: int = 1, **kwargs: object):
    return make_synthetic_case(seed=seed, size=SIZE, **kwargs)


def _write(image: sitk.Image, path: Path, compress: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def _like(array: np.ndarray, image: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    out.CopyInformation(image)
    return out


def _b0_from(case) -> sitk.Image:
    """The b=0 image of a synthetic case: S0 = S_b * exp(b * ADC) (CSF bright, like a T2 image)."""
    dwi = sitk.GetArrayFromImage(case.dwi).astype(np.float64)
    adc_mm2s = sitk.GetArrayFromImage(case.adc) * case.adc_unit_mm2s
    return _like(dwi * np.exp(B_VALUE * np.clip(adc_mm2s, 0, 4e-3)), case.dwi)


# --- 1. read completely or refuse -----------------------------------------------------------------------------------

def _cut(fraction: float) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])
    return edit


def _pad(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\0" * 4096)


def _more_slices_in_header(path: Path) -> None:
    """An uncompressed NIfTI-1 whose header promises one slice more than the file holds (dim[3] + 1)."""
    data = bytearray(path.read_bytes())
    (dim3,) = struct.unpack_from("<h", data, 40 + 2 * 3)
    struct.pack_into("<h", data, 40 + 2 * 3, dim3 + 1)
    path.write_bytes(bytes(data))


def _cut_gzip_member(path: Path) -> None:
    """A .nii.gz whose decompressed data is 10% of the original but which is a valid gzip stream (recompressed)."""
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: 352 + (len(raw) - 352) // 10]))


@dataclass(frozen=True)
class FileRow:
    name: str
    suffix: str
    compress: bool
    edit: Callable[[Path], None]
    expected: str  # a fragment of the error message


FILE_ROWS = [
    FileRow("nii.gz cut at 10%", ".nii.gz", True, _cut(0.1), "cut short"),
    FileRow("nii.gz cut at 90%", ".nii.gz", True, _cut(0.9), "cut short"),
    FileRow("nii.gz re-compressed after cutting the data", ".nii.gz", True, _cut_gzip_member, "incomplete"),
    FileRow("nii cut at 50%", ".nii", False, _cut(0.5), "incomplete"),
    FileRow("nii header promising one more slice", ".nii", False, _more_slices_in_header, "incomplete"),
    FileRow("nii longer than its header", ".nii", False, _pad, "more voxel data"),
    FileRow("nrrd cut at 50%", ".nrrd", False, _cut(0.5), "cannot be read"),
    FileRow("compressed nrrd cut at 50%", ".nrrd", True, _cut(0.5), "cannot be read"),
    FileRow("nrrd longer than its header", ".nrrd", False, _pad, "more voxel data"),
    FileRow("mha cut at 50%", ".mha", False, _cut(0.5), "incomplete"),
    FileRow("mha longer than its header", ".mha", False, _pad, "more voxel data"),
    FileRow("compressed mha cut at 50%", ".mha", True, _cut(0.5), "cannot be read"),
]


@pytest.mark.parametrize("row", FILE_ROWS, ids=[r.name for r in FILE_ROWS])
@pytest.mark.parametrize("reader", ["image", "mask"])
def test_an_incomplete_or_overlong_file_is_an_error_naming_it(tmp_path: Path, row: FileRow, reader: str) -> None:
    case = _case()
    image = case.dwi if reader == "image" else sitk.Cast(case.mask, sitk.sitkUInt8)
    path = _write(image, tmp_path / f"scan{row.suffix}", row.compress)
    (read_image if reader == "image" else read_mask)(path)  # intact: fine
    row.edit(path)
    with pytest.raises(InputFileError, match=row.expected) as info:
        (read_image if reader == "image" else read_mask)(path)
    assert str(path) in str(info.value)


def test_nan_stored_in_nifti_is_seen_not_read_as_zero(tmp_path: Path) -> None:
    """ITK's NIfTI reader turns NaN into 0 (a dark 'infarct' on ADC); the reader puts them back where they were."""
    case = _case()
    adc = sitk.GetArrayFromImage(case.adc)
    holes = np.zeros(adc.shape, bool)
    holes[5:8, 10:20, 3:30] = True
    adc[holes] = np.nan
    path = _write(_like(adc, case.adc), tmp_path / "adc.nii.gz")
    kept = sitk.GetArrayFromImage(read_image(path, "ADC", keep_nonfinite=True))
    assert np.array_equal(np.isnan(kept), holes)
    with pytest.warns(UserWarning, match="nearest finite"):
        filled = sitk.GetArrayFromImage(read_image(path, "ADC"))
    assert np.isfinite(filled).all()
    brain = sitk.GetArrayFromImage(case.brain_mask).astype(bool)
    assert np.median(filled[holes & brain]) > 0.5  # brain ADC (10^-3 mm²/s) from the neighbours, not 0 (infarct)


def test_evaluate_refuses_a_cut_prediction_instead_of_scoring_it(tmp_path: Path) -> None:
    root = tmp_path / "isles"
    case = _case(seed=4)
    anat = root / "sub-strokecase0001" / "ses-0001" / "dwi"
    _write(case.dwi, anat / "sub-strokecase0001_ses-0001_dwi.nii.gz")
    _write(case.adc, anat / "sub-strokecase0001_ses-0001_adc.nii.gz")
    _write(case.mask,
           root / "derivatives" / "sub-strokecase0001" / "ses-0001" / "sub-strokecase0001_ses-0001_msk.nii.gz")
    from StrokeSegLib.evaluation.scoring import prediction_path
    from StrokeSegLib.io.cases import find_cases

    case_id = find_cases(root)[0].case_id
    pred = _write(case.mask, prediction_path(tmp_path / "pred", case_id))
    _cut(0.5)(pred)
    with pytest.warns(UserWarning, match="could not be scored"):
        result = evaluate(tmp_path / "pred", root, tmp_path / "eval", overlays=False)
    assert not result.rows
    assert [f["case_id"] for f in result.failed] == [case_id]
    assert str(pred) in result.failed[0]["error"] and "cut short" in result.failed[0]["error"]


def test_resume_redoes_a_cut_mask_instead_of_counting_it(tmp_path: Path, tiny_model: Path) -> None:
    from StrokeSegLib.apps.batch import mask_path, run_batch

    root = tmp_path / "isles"
    case = _case(seed=5)
    anat = root / "sub-strokecase0002" / "ses-0001" / "dwi"
    _write(case.dwi, anat / "sub-strokecase0002_ses-0001_dwi.nii.gz")
    _write(case.adc, anat / "sub-strokecase0002_ses-0001_adc.nii.gz")
    out = tmp_path / "out"
    first = run_batch(root, out, tiny_model, SegmentOptions(device="cpu"), show_progress=False)
    assert [o.status for o in first.outcomes] == ["ok"]
    target = mask_path(out, first.outcomes[0].case_id)
    _cut(0.3)(target)
    again = run_batch(root, out, tiny_model, SegmentOptions(device="cpu"), resume=True, show_progress=False)
    assert [o.status for o in again.outcomes] == ["ok"]  # segmented again, not "skipped" with a made-up volume
    read_mask(target)  # and the new file is complete


# --- 2. plausibility before the network -----------------------------------------------------------------------------

@dataclass(frozen=True)
class PairRow:
    name: str
    make: Callable[[Path], tuple[sitk.Image, sitk.Image]]
    refused: str | None  # which file the error names ("dwi"/"adc"), None when the pair must pass
    expected: str = ""   # a fragment of the message


def _pair(**kwargs: object) -> Callable[[Path], tuple[sitk.Image, sitk.Image]]:
    def make(_: Path) -> tuple[sitk.Image, sitk.Image]:
        case = _case(**kwargs)
        return case.dwi, case.adc
    return make


def _swapped(_: Path):
    case = _case()
    return case.adc, case.dwi


def _adc_as_dwi(_: Path):
    case = _case()
    return case.adc, case.adc


def _b0_as_dwi(_: Path):
    case = _case()
    return _b0_from(case), case.adc


def _mask_as_dwi(_: Path):
    case = _case()
    return sitk.Cast(case.mask, sitk.sitkFloat32), case.adc


def _mask_as_adc(_: Path):
    case = _case()
    return case.dwi, sitk.Cast(case.brain_mask, sitk.sitkFloat32)


def _negated_adc(_: Path):
    case = _case()
    return case.dwi, _like(-sitk.GetArrayFromImage(case.adc), case.adc)


def _adc_times(factor: float):
    def make(_: Path):
        case = _case()
        return case.dwi, _like(sitk.GetArrayFromImage(case.adc) * factor, case.adc)
    return make


def _nan_in_adc(share: float):
    def make(_: Path):
        case = _case()
        adc = sitk.GetArrayFromImage(case.adc)
        rng = np.random.default_rng(0)
        brain = sitk.GetArrayFromImage(case.brain_mask).astype(bool)
        adc[brain & (rng.random(adc.shape) < share)] = np.nan
        return case.dwi, _like(adc, case.adc)
    return make


def _spacing(spacing: tuple[float, float, float], size: tuple[int, int, int] = SIZE):
    def make(_: Path):
        case = make_synthetic_case(seed=1, size=size)
        dwi, adc = case.dwi, case.adc
        dwi.SetSpacing(spacing)
        adc.SetSpacing(spacing)
        return dwi, adc
    return make


def _bval_in_wrong_order(folder: Path):
    """A 4-D series [b=1000, b=0] whose .bval says "0 1000": the reader picks the b=0 volume as DWI."""
    case = _case()
    series = sitk.JoinSeries([case.dwi, _b0_from(case)])
    path = _write(series, folder / "dwi4d.nii.gz")
    (folder / "dwi4d.bval").write_text("0 1000\n")
    return read_image(path, "DWI", keep_nonfinite=True), case.adc


PAIR_ROWS = [
    PairRow("correct pair, ADC in 10^-3 mm2/s", _pair(), None),
    PairRow("correct pair, ADC in mm2/s", _pair(adc_units=1.0), None),
    PairRow("correct pair, ADC in 10^-6 mm2/s", _pair(adc_units=1e-6), None),
    PairRow("correct pair, whole head", _pair(skull=True), None),
    PairRow("correct pair, ADC on its own shifted grid", _pair(adc_shift_mm=(2.0, -1.5, 1.0)), None),
    PairRow("correct pair, no lesion", _pair(lesion=False), None),
    PairRow("DWI and ADC swapped", _swapped, "adc", "no brain ADC in any known unit"),
    PairRow("ADC given as DWI", _adc_as_dwi, "dwi", "CSF is brighter"),
    PairRow("b=0 image given as DWI", _b0_as_dwi, "dwi", "CSF is brighter"),
    PairRow("4-D DWI with .bval in the wrong order", _bval_in_wrong_order, "dwi", "CSF is brighter"),
    PairRow("lesion mask given as DWI", _mask_as_dwi, "dwi", "label image"),
    PairRow("brain mask given as ADC", _mask_as_adc, "adc", "label image"),
    PairRow("ADC negated", _negated_adc, "adc", "negative"),
    PairRow("ADC in no known unit (x 30)", _adc_times(30.0), "adc", "no brain ADC in any known unit"),
    PairRow("30% of the brain NaN in the ADC", _nan_in_adc(0.3), "adc", "NaN or infinite"),
    PairRow("0.1 mm spacing (a 4 mm head)", _spacing((0.1, 0.1, 0.2)), "dwi", "spacing"),
    PairRow("10 mm spacing on a 112-voxel-wide scan (a 1.1 m head)", _spacing((10.0, 10.0, 10.0), (112, 112, 8)),
            "dwi", "a head would be"),
]


@pytest.mark.parametrize("row", PAIR_ROWS, ids=[r.name for r in PAIR_ROWS])
def test_each_pair_is_segmented_or_refused_naming_the_file(tmp_path: Path, tiny_model: Path, row: PairRow) -> None:
    dwi, adc = row.make(tmp_path)
    names = {"dwi": str(tmp_path / "DWI-file.nii.gz"), "adc": str(tmp_path / "ADC-file.nii.gz")}
    options = SegmentOptions(device="cpu")
    if row.refused is None:
        result = segment_images(dwi, adc, tiny_model, options, dwi_path=names["dwi"], adc_path=names["adc"])
        assert result.report["input_checks"]["refusals_overridden"] == []
        return
    with pytest.raises(ImplausibleInputError) as info:
        segment_images(dwi, adc, tiny_model, options, dwi_path=names["dwi"], adc_path=names["adc"])
    message = str(info.value)
    assert row.expected in message
    assert f"{names[row.refused]}: " in message  # the finding names the file that looks wrong
    assert "--force" in message


def test_a_few_nan_are_repaired_from_neighbours_with_a_warning(tiny_model: Path) -> None:
    dwi, adc = _nan_in_adc(0.002)(Path())
    with pytest.warns(UserWarning, match="nearest finite neighbours"):
        checked = input_checks.check_inputs(dwi, adc, "d.nii.gz", "a.nii.gz")
    repaired = sitk.GetArrayFromImage(checked.adc)
    holes = np.isnan(sitk.GetArrayFromImage(adc))
    assert holes.any() and np.isfinite(repaired).all()
    brain = sitk.GetArrayFromImage(_case().brain_mask).astype(bool)
    # Inside the brain the holes now hold brain ADC (about 0.75-3 x 10^-3 mm²/s), not 0 (which reads as infarct).
    assert repaired[holes & brain].min() > 0.3
    assert checked.notes and "a.nii.gz" in checked.notes[0]


def test_force_segments_anyway_and_records_the_findings(tmp_path: Path, tiny_model: Path) -> None:
    case = _case()
    dwi, adc = _write(case.adc, tmp_path / "adc_as_dwi.nii.gz"), _write(case.adc, tmp_path / "adc.nii.gz")
    report_path = tmp_path / "report.json"
    assert strokeseg(["segment", "--dwi", str(dwi), "--adc", str(adc), "--out", str(tmp_path / "m.nii.gz"),
                      "--model", str(tiny_model), "--device", "cpu"]) == 2
    assert not (tmp_path / "m.nii.gz").exists()
    with pytest.warns(UserWarning, match="proceeding despite"):
        status = strokeseg(["segment", "--dwi", str(dwi), "--adc", str(adc), "--out", str(tmp_path / "m.nii.gz"),
                            "--model", str(tiny_model), "--device", "cpu", "--force", "--report", str(report_path)])
    assert status == 0
    checks = json.loads(report_path.read_text())["input_checks"]
    assert checks["forced"] is True
    assert any("adc_as_dwi.nii.gz" in f and "CSF is brighter" in f for f in checks["refusals_overridden"])


def test_the_logic_passes_force_through() -> None:
    from StrokeSegLib.scene.logic import build_segment_command

    assert "--force" in build_segment_command("py", "d", "a", "m", "r", options=SegmentOptions(force=True))
    assert "--force" not in build_segment_command("py", "d", "a", "m", "r")


# --- 4. models ------------------------------------------------------------------------------------------------------

@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_tiny_model) -> Path:
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    path = make_tiny_model(bundled / "strokeseg-starter.safetensors", model_id="strokeseg-starter")
    (bundled / "strokeseg-starter.sha256").write_text(f"{model_registry.file_sha256(path)}  {path.name}\n")
    monkeypatch.setattr(model_registry, "BUNDLED_DIR", bundled)
    monkeypatch.setenv("STROKESEG_HOME", str(tmp_path / "home"))
    return bundled


def test_importing_a_model_under_a_bundled_id_is_refused(tmp_path: Path, registry: Path, make_tiny_model) -> None:
    impostor = make_tiny_model(tmp_path / "mine.safetensors", model_id="strokeseg-starter", seed=3)
    with pytest.raises(StrokeSegError, match="bundled") as info:
        model_registry.import_model(impostor, replace=True)
    assert "mine.safetensors" in str(info.value)
    assert model_registry.resolve_model(None) == registry / "strokeseg-starter.safetensors"


def test_a_cache_file_shadowing_a_bundled_model_is_ignored_and_reported(tmp_path: Path, registry: Path,
                                                                        make_tiny_model) -> None:
    cache = model_registry.cache_dir()
    cache.mkdir(parents=True)
    shadow = make_tiny_model(cache / "strokeseg-starter.safetensors", model_id="strokeseg-starter", seed=4)
    (cache / "strokeseg-starter.sha256").write_text(f"{model_registry.file_sha256(shadow)}  {shadow.name}\n")
    assert model_registry.resolve_model(None) == registry / "strokeseg-starter.safetensors"
    assert model_registry.resolve_model("strokeseg-starter") == registry / "strokeseg-starter.safetensors"
    verdicts = {(e.source, ok): message for e, ok, message in model_registry.verify_models()}
    assert ("bundled", True) in verdicts
    assert "shadows the bundled model" in verdicts[("cache", False)]
    assert strokeseg(["models", "verify"]) == 1


def test_a_model_with_nan_weights_is_refused(tmp_path: Path, make_tiny_model) -> None:
    from safetensors.torch import load_file, save_file

    path = make_tiny_model(tmp_path / "ok.safetensors")
    tensors = load_file(str(path))
    name = sorted(k for k, t in tensors.items() if t.is_floating_point())[0]
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    broken = tmp_path / "nan.safetensors"
    save_file(tensors, str(broken), metadata=header)
    read_metadata(broken)  # the metadata is fine
    with pytest.raises(ModelFileError, match="NaN or infinite") as info:
        load_model(broken)
    assert "nan.safetensors" in str(info.value)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1, 1.5])
def test_a_model_threshold_outside_0_1_is_refused(tmp_path: Path, make_tiny_model, threshold: float) -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        make_tiny_model(tmp_path / "t.safetensors", threshold=threshold)


# --- 5. arguments and outputs checked before any work ---------------------------------------------------------------

@pytest.fixture
def no_segmentation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any segmentation starts: the point is to refuse before computing."""
    import StrokeSegLib.engine.segmentation as seg

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("the segmentation started although the request was invalid")

    monkeypatch.setattr(seg, "segment_files", boom)
    monkeypatch.setattr(seg, "segment_images", boom)


@pytest.mark.parametrize("extra, fragment", [
    (["--overlap", "1"], "overlap must lie in [0, 0.9]"),
    (["--overlap", "-0.1"], "overlap"),
    (["--threshold", "-1"], "threshold must lie in (0, 1)"),
    (["--threshold", "0"], "threshold"),
    (["--threshold", "nan"], "threshold"),
    (["--threshold", "abc"], "threshold must be a number"),
    (["--min-lesion-mm3", "-5"], "min-lesion-mm3"),
    (["--batch-size", "0"], "batch size must be at least 1"),
])
@pytest.mark.parametrize("command", ["segment", "batch"])
def test_bad_arguments_are_a_usage_error_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                         no_segmentation: None, command: str, extra: list[str],
                                                         fragment: str) -> None:
    base = (["segment", "--dwi", "d.nii.gz", "--adc", "a.nii.gz", "--out", str(tmp_path / "m.nii.gz")]
            if command == "segment" else ["batch", str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as info:
        strokeseg(base + extra)
    assert info.value.code == 2
    assert fragment in capsys.readouterr().err


def _blocked(tmp_path: Path) -> Path:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker


@pytest.mark.parametrize("option", ["--out", "--prob", "--report"])
def test_segment_checks_every_output_place_before_computing(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                            no_segmentation: None, option: str) -> None:
    case = _case()
    dwi, adc = _write(case.dwi, tmp_path / "dwi.nii.gz"), _write(case.adc, tmp_path / "adc.nii.gz")
    outputs = {"--out": str(tmp_path / "m.nii.gz"), "--prob": str(tmp_path / "p.nii.gz"),
               "--report": str(tmp_path / "r.json")}
    bad = str(_blocked(tmp_path) / ("x.json" if option == "--report" else "x.nii.gz"))
    outputs[option] = bad
    args = ["segment", "--dwi", str(dwi), "--adc", str(adc)] + [a for k, v in outputs.items() for a in (k, v)]
    assert strokeseg(args) == 2
    err = capsys.readouterr().err
    assert bad in err and "is a file, not a folder" in err


def test_segment_refuses_an_output_name_that_is_no_image_format(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                               no_segmentation: None) -> None:
    assert strokeseg(["segment", "--dwi", "d.nii.gz", "--adc", "a.nii.gz", "--out", str(tmp_path / "mask.txt")]) == 2
    assert "mask.txt" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["batch", "evaluate"])
def test_batch_and_evaluate_check_the_output_folder_before_computing(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                     no_segmentation: None, command: str) -> None:
    out = str(_blocked(tmp_path) / "results")
    args = (["batch", str(tmp_path), "--out", out] if command == "batch"
            else ["evaluate", "--pred", str(tmp_path), "--gt", str(tmp_path), "--out", out])
    assert strokeseg(args) == 2
    assert out in capsys.readouterr().err


def test_a_failed_cleanup_never_hides_the_original_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_unlink = Path.unlink

    def refusing_unlink(self: Path, missing_ok: bool = False) -> None:
        if ".tmp-" in self.name:
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refusing_unlink)
    with pytest.raises(ValueError, match="the original failure"):
        with atomic_path(tmp_path / "out.nii.gz") as tmp:
            tmp.write_bytes(b"partial")
            raise ValueError("the original failure")


# --- the same mix-ups on real scans (skipped without ../shared/data) ------------------------------------------------

def _isles(root: Path, case: str, kind: str) -> Path:
    return root / f"sub-strokecase{case}" / "ses-0001" / "dwi" / f"sub-strokecase{case}_ses-0001_{kind}.nii.gz"


def _isles_mask(root: Path, case: str) -> Path:
    return root / "derivatives" / f"sub-strokecase{case}" / "ses-0001" / f"sub-strokecase{case}_ses-0001_msk.nii.gz"


@pytest.mark.realdata
@pytest.mark.parametrize("case", ["0002", "0003", "0009"])
def test_real_isles_pairs_pass_every_check(isles_root: Path, case: str) -> None:
    dwi_path, adc_path = _isles(isles_root, case, "dwi"), _isles(isles_root, case, "adc")
    checked = input_checks.check_inputs(read_image(dwi_path, "DWI", keep_nonfinite=True),
                                        read_image(adc_path, "ADC", keep_nonfinite=True), dwi_path, adc_path)
    m = checked.measures
    assert m["dwi_csf_tissue_ratio"] < 0.7 * input_checks.MAX_DWI_CSF_TISSUE_RATIO  # a margin, not a near miss
    assert checked.findings == []


@pytest.mark.realdata
def test_real_nonstripped_pair_passes_and_its_b0_as_dwi_is_refused(nonstripped_case: Path) -> None:
    adc_path = nonstripped_case / "adc.nii.gz"
    adc = read_image(adc_path, "ADC", keep_nonfinite=True)
    dwi_path = nonstripped_case / "dwi.nii.gz"
    input_checks.check_inputs(read_image(dwi_path, "DWI", keep_nonfinite=True), adc, dwi_path, adc_path)
    b0_path = nonstripped_case / "b0.nii.gz"
    with pytest.raises(ImplausibleInputError, match="CSF is brighter") as info:
        input_checks.check_inputs(read_image(b0_path, "DWI", keep_nonfinite=True), adc, b0_path, adc_path)
    assert f"{b0_path}: " in str(info.value)


@dataclass(frozen=True)
class RealRow:
    name: str
    dwi: Callable[[Path], Path]
    adc: Callable[[Path], Path]
    refused: str
    expected: str


REAL_ROWS = [
    RealRow("swapped", lambda r: _isles(r, "0009", "adc"), lambda r: _isles(r, "0009", "dwi"), "adc", "known unit"),
    RealRow("ADC as DWI", lambda r: _isles(r, "0002", "adc"), lambda r: _isles(r, "0002", "adc"), "dwi", "CSF"),
    RealRow("expert mask as DWI", lambda r: _isles_mask(r, "0009"), lambda r: _isles(r, "0009", "adc"), "dwi",
            "label image"),
]


@pytest.mark.realdata
@pytest.mark.parametrize("row", REAL_ROWS, ids=[r.name for r in REAL_ROWS])
def test_real_mix_ups_are_refused_naming_the_file(isles_root: Path, row: RealRow) -> None:
    paths = {"dwi": row.dwi(isles_root), "adc": row.adc(isles_root)}
    with pytest.raises(ImplausibleInputError, match=row.expected) as info:
        input_checks.check_inputs(read_image(paths["dwi"], "DWI", keep_nonfinite=True),
                                  read_image(paths["adc"], "ADC", keep_nonfinite=True), paths["dwi"], paths["adc"])
    assert f"{paths[row.refused]}: " in str(info.value)


@pytest.mark.realdata
def test_real_adc_of_another_patient_with_this_header_is_refused(isles_root: Path, tmp_path: Path,
                                                                  tiny_model: Path) -> None:
    dwi_path = _isles(isles_root, "0002", "dwi")
    other = sitk.ReadImage(str(_isles(isles_root, "0003", "adc")))
    other.CopyInformation(sitk.ReadImage(str(dwi_path)))  # same size: only the voxels differ
    adc_path = _write(other, tmp_path / "other_adc.nii.gz")
    with pytest.raises(ImplausibleInputError, match="does not match the DWI") as info:
        segment_files(dwi_path, adc_path, tiny_model, SegmentOptions(device="cpu"))
    assert f"{adc_path}: " in str(info.value)


@pytest.mark.realdata
def test_real_dwi_cut_short_is_an_error(isles_root: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut_dwi.nii.gz"
    shutil.copyfile(_isles(isles_root, "0009", "dwi"), cut)
    _cut(0.1)(cut)
    with pytest.raises(InputFileError, match="cut short") as info:
        read_image(cut)
    assert str(cut) in str(info.value)


# --- end to end through the command line ----------------------------------------------------------------------------

def test_segment_of_a_cut_file_exits_2_naming_it_and_writes_nothing(tmp_path: Path, tiny_model: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    case = _case()
    dwi, adc = _write(case.dwi, tmp_path / "dwi.nii.gz"), _write(case.adc, tmp_path / "adc.nii.gz")
    _cut(0.1)(dwi)
    out = tmp_path / "mask.nii.gz"
    assert strokeseg(["segment", "--dwi", str(dwi), "--adc", str(adc), "--out", str(out),
                      "--model", str(tiny_model)]) == 2
    assert str(dwi) in capsys.readouterr().err
    assert not out.exists()


def test_batch_lists_a_mixed_up_case_as_failed_with_its_reason_and_exits_1(tmp_path: Path, tiny_model: Path) -> None:
    root = tmp_path / "isles"
    good, swapped = _case(seed=2), _case(seed=3)
    for name, dwi, adc in (("sub-strokecase0001", good.dwi, good.adc),
                           ("sub-strokecase0002", swapped.adc, swapped.dwi)):
        folder = root / name / "ses-0001" / "dwi"
        _write(dwi, folder / f"{name}_ses-0001_dwi.nii.gz")
        _write(adc, folder / f"{name}_ses-0001_adc.nii.gz")
    out = tmp_path / "out"
    assert strokeseg(["batch", str(root), "--out", str(out), "--model", str(tiny_model), "--device", "cpu"]) == 1
    with open(out / "volumes.csv", newline="") as handle:
        rows = {r["case_id"]: r for r in csv.DictReader(handle)}
    assert rows["sub-strokecase0001_ses-0001"]["status"] == "ok"
    failed = rows["sub-strokecase0002_ses-0001"]
    assert failed["status"] == "failed" and "no brain ADC in any known unit" in failed["error"]
    assert "sub-strokecase0002_ses-0001_adc.nii.gz" in failed["error"]


@pytest.mark.parametrize("options", [SegmentOptions(threshold=-1.0), SegmentOptions(threshold=1.0),
                                     SegmentOptions(overlap=1.0), SegmentOptions(min_lesion_mm3=float("nan")),
                                     SegmentOptions(batch_size=0)], ids=["threshold -1", "threshold 1", "overlap 1",
                                                                         "min lesion NaN", "batch size 0"])
def test_the_python_api_refuses_unusable_options_before_any_work(tiny_model: Path, options: SegmentOptions,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import StrokeSegLib.engine.segmentation as seg

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started with unusable options")

    monkeypatch.setattr(seg, "check_inputs", must_not_run)
    monkeypatch.setattr(seg, "read_image", must_not_run)
    case = _case()
    with pytest.raises(StrokeSegError):
        segment_images(case.dwi, case.adc, tiny_model, options)
    with pytest.raises(StrokeSegError):
        segment_files("dwi.nii.gz", "adc.nii.gz", tiny_model, options)


def _real_negated(dwi: sitk.Image, adc: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    return dwi, _like(-sitk.GetArrayFromImage(adc), adc)


def _real_nan(share: float):
    def edit(dwi: sitk.Image, adc: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
        array = sitk.GetArrayFromImage(adc)
        array[(np.random.default_rng(1).random(array.shape) < share) & (array != 0)] = np.nan
        return dwi, _like(array, adc)
    return edit


def _real_spacing(factor: float):
    def edit(dwi: sitk.Image, adc: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
        for image in (dwi, adc):
            image.SetSpacing(tuple(s * factor for s in image.GetSpacing()))
        return dwi, adc
    return edit


REAL_EDITS = [
    ("ADC negated", _real_negated, "adc", "negative"),
    ("30% of the ADC NaN", _real_nan(0.3), "adc", "NaN or infinite"),
    ("0.1 mm spacing", _real_spacing(0.05), "dwi", "spacing"),
    ("10 mm spacing", _real_spacing(5.0), "dwi", "a head would be"),
    ("0.3% of the ADC NaN (repaired)", _real_nan(0.003), None, ""),
]


@pytest.mark.realdata
@pytest.mark.parametrize("edit", REAL_EDITS, ids=[e[0] for e in REAL_EDITS])
def test_real_scan_edits_are_refused_or_repaired(isles_root: Path, edit: tuple) -> None:
    _, change, refused, expected = edit
    paths = {"dwi": _isles(isles_root, "0009", "dwi"), "adc": _isles(isles_root, "0009", "adc")}
    dwi, adc = change(read_image(paths["dwi"], "DWI"), read_image(paths["adc"], "ADC"))
    if refused is None:
        with pytest.warns(UserWarning, match="nearest finite neighbours"):
            checked = input_checks.check_inputs(dwi, adc, paths["dwi"], paths["adc"])
        assert np.isfinite(sitk.GetArrayViewFromImage(checked.adc)).all()
        return
    with pytest.raises(ImplausibleInputError, match=expected) as info:
        input_checks.check_inputs(dwi, adc, paths["dwi"], paths["adc"])
    assert f"{paths[refused]}: " in str(info.value)


@pytest.mark.realdata
def test_real_4d_series_with_bval_in_the_wrong_order_is_refused(nonstripped_case: Path, tmp_path: Path) -> None:
    """[b=1000, b=0] with a .bval saying "0 1000": the b=0 volume is chosen as DWI, and refused as such."""
    dwi = sitk.ReadImage(str(nonstripped_case / "dwi.nii.gz"), sitk.sitkFloat32)
    b0 = sitk.ReadImage(str(nonstripped_case / "b0.nii.gz"), sitk.sitkFloat32)
    series = _write(sitk.JoinSeries([dwi, b0]), tmp_path / "series.nii.gz")
    (tmp_path / "series.bval").write_text("0 1000\n")
    adc_path = nonstripped_case / "adc.nii.gz"
    with pytest.raises(ImplausibleInputError, match="CSF is brighter") as info:
        input_checks.check_inputs(read_image(series, "DWI", keep_nonfinite=True),
                                  read_image(adc_path, "ADC", keep_nonfinite=True), series, adc_path)
    assert f"{series}: " in str(info.value)
    (tmp_path / "series.bval").write_text("1000 0\n")  # the right order: accepted
    input_checks.check_inputs(read_image(series, "DWI", keep_nonfinite=True),
                              read_image(adc_path, "ADC", keep_nonfinite=True), series, adc_path)
