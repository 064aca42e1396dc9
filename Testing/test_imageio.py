"""imageio: real scans keep their geometry, and every kind of bad input gives our own error naming the file."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegLib.common.errors import InputFileError, InvalidImageError, NonFiniteVoxelsWarning
from StrokeSegLib.io.imageio import find_bvals, read_image, read_mask, select_highest_b, write_image

OBLIQUE = np.array(
    [[0.9396926, -0.3420201, 0.0], [0.3368241, 0.9254166, 0.1736482], [-0.0593912, -0.1631759, 0.9848078]]
)


def _volume(array: np.ndarray, origin=(10.0, -20.0, 5.0), spacing=(1.5, 2.0, 3.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(OBLIQUE.ravel().tolist())
    return image


def _series(path: Path, volumes: list[np.ndarray]) -> sitk.Image:
    """A 4-D series on an oblique grid written to ``path``; returns the 4-D image."""
    image = sitk.GetImageFromArray(np.stack(volumes), isVector=False)
    direction = np.eye(4)
    direction[:3, :3] = OBLIQUE
    image.SetDirection(direction.ravel().tolist())
    image.SetOrigin((10.0, -20.0, 5.0, 0.0))
    image.SetSpacing((1.5, 2.0, 3.0, 1.0))
    sitk.WriteImage(image, str(path))
    return image


def _ramp(value: float, shape=(4, 5, 6)) -> np.ndarray:
    return (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1) * value


def test_roundtrip_keeps_geometry_and_is_float32(tmp_path: Path) -> None:
    original = _volume(np.random.default_rng(0).random((4, 5, 6)).astype(np.float64))
    for name in ("a.nii.gz", "a.nii", "a.mha", "a.nrrd"):
        path = write_image(original, tmp_path / name)
        image = read_image(path, role="ADC")
        assert image.GetPixelID() == sitk.sitkFloat32
        np.testing.assert_allclose(image.GetOrigin(), original.GetOrigin(), atol=1e-5)
        np.testing.assert_allclose(image.GetSpacing(), original.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(image.GetDirection(), original.GetDirection(), atol=1e-5)
        np.testing.assert_allclose(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(original), rtol=1e-6)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope_dwi.nii.gz"
    with pytest.raises(InputFileError, match="not found") as info:
        read_image(missing)
    assert str(missing) in str(info.value) and info.value.path == missing


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not a file"):
        read_image(tmp_path)


def test_garbage_bytes(tmp_path: Path) -> None:
    bad = tmp_path / "garbage_dwi.nii.gz"
    bad.write_bytes(b"\x1f\x8b this is not really gzip nor nifti" * 20)
    with pytest.raises(InputFileError, match="cannot be read") as info:
        read_image(bad)
    assert str(bad) in str(info.value)


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(InputFileError, match="cannot be read"):
        read_image(bad, role="ADC")


def test_2d_image_refused(tmp_path: Path) -> None:
    path = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(_ramp(1.0, (8, 9))), str(path))
    with pytest.raises(InvalidImageError, match="2-D") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_single_slice_volume_refused(tmp_path: Path) -> None:
    path = tmp_path / "thin.mha"
    sitk.WriteImage(sitk.GetImageFromArray(_ramp(1.0, (1, 8, 9))), str(path))
    with pytest.raises(InvalidImageError, match="single slice"):
        read_image(path)


def test_4d_dwi_without_bvalues_refused_with_fix(tmp_path: Path) -> None:
    path = tmp_path / "sub-1_dwi.nii.gz"
    _series(path, [_ramp(3.0), _ramp(1.0)])
    with pytest.raises(InvalidImageError, match="b-values are unknown") as info:
        read_image(path, role="DWI")
    assert "sub-1_dwi.bval" in str(info.value) and "3-D" in str(info.value)


def test_4d_with_bval_file_picks_highest_b_and_keeps_geometry(tmp_path: Path) -> None:
    path = tmp_path / "sub-1_dwi.nii.gz"
    volumes = [_ramp(5.0), _ramp(1.0), _ramp(2.0)]
    _series(path, volumes)
    (tmp_path / "sub-1_dwi.bval").write_text("0 1000 500\n")
    image = read_image(path, role="DWI")
    assert image.GetDimension() == 3 and image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), volumes[1])
    np.testing.assert_allclose(np.array(image.GetDirection()).reshape(3, 3), OBLIQUE, atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), (10.0, -20.0, 5.0), atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), (1.5, 2.0, 3.0), atol=1e-6)


def test_4d_with_json_sidecar_and_shell_geometric_mean(tmp_path: Path) -> None:
    path = tmp_path / "scan.nii.gz"
    volumes = [_ramp(9.0), _ramp(1.0), _ramp(4.0)]
    _series(path, volumes)
    (tmp_path / "scan.json").write_text(json.dumps({"DiffusionBValue": [0, 995, 1005]}))
    found = find_bvals(path)
    assert found is not None and found[0] == [0.0, 995.0, 1005.0] and found[1].name == "scan.json"
    image = read_image(path)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), np.sqrt(volumes[1] * volumes[2]), rtol=1e-5)


def test_select_highest_b_explicit_and_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "series.nii.gz"
    series = _series(path, [_ramp(1.0), _ramp(7.0)])
    np.testing.assert_allclose(sitk.GetArrayFromImage(select_highest_b(series, path, bvals=[800, 0])), _ramp(1.0))
    with pytest.raises(InvalidImageError, match="2 volumes but 3 b-values"):
        select_highest_b(series, path, bvals=[0, 1000, 2000])
    with pytest.raises(InvalidImageError, match="no diffusion-weighted volume"):
        select_highest_b(series, path, bvals=[0, 0])
    (tmp_path / "series.bval").write_text("0 abc")
    with pytest.raises(InvalidImageError, match="not a list of numbers"):
        read_image(path)


def test_4d_adc_squeezes_single_volume_and_refuses_several(tmp_path: Path) -> None:
    one = tmp_path / "adc1.nii.gz"
    _series(one, [_ramp(0.001)])
    image = read_image(one, role="ADC")
    assert image.GetDimension() == 3
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), _ramp(0.001), rtol=1e-6)
    two = tmp_path / "adc2.nii.gz"
    _series(two, [_ramp(0.001), _ramp(0.002)])
    (tmp_path / "adc2.bval").write_text("0 1000")  # b-values must not matter for ADC
    with pytest.raises(InvalidImageError, match="2 volumes"):
        read_image(two, role="ADC")


@pytest.mark.parametrize("name", ["nan_adc.mha", "nan_adc.nrrd", "nan_adc.nii.gz"])
def test_nan_and_inf_replaced_with_warning(tmp_path: Path, name: str) -> None:
    # NIfTI included: ITK's NIfTI reader zeroes NaN itself, the reader puts them back from the file's own data.
    array = _ramp(1.0)
    array[0, 0, :3] = np.nan
    array[1, 1, 1] = np.inf
    path = write_image(_volume(array), tmp_path / name)
    with pytest.warns(NonFiniteVoxelsWarning, match=r"4 NaN or infinite") as record:
        image = read_image(path, role="ADC")
    assert str(path) in str(record[0].message)
    result = sitk.GetArrayFromImage(image)
    # Replaced from the nearest finite voxel, not by 0 (which on an ADC reads as the darkest infarct).
    assert np.all(np.isfinite(result))
    assert result[0, 0, 0] in {array[1, 0, 0], array[0, 1, 0]}  # its finite neighbours one voxel away
    assert result[1, 1, 1] in {array[0, 1, 1], array[2, 1, 1], array[1, 0, 1], array[1, 2, 1], array[1, 1, 0],
                               array[1, 1, 2]}


@pytest.mark.parametrize("value", [0.0, 3.5])
def test_constant_image_is_empty(tmp_path: Path, value: float) -> None:
    path = write_image(_volume(np.full((4, 5, 6), value, np.float32)), tmp_path / "flat_dwi.nii.gz")
    with pytest.raises(InvalidImageError, match="empty") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_read_mask_binarises_and_allows_empty(tmp_path: Path) -> None:
    labels = np.zeros((4, 5, 6), np.uint16)
    labels[1, 2, 3] = 1
    labels[2, 2, 2] = 2
    mask = read_mask(write_image(_volume(labels), tmp_path / "msk.nii.gz"))
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert int(sitk.GetArrayFromImage(mask).sum()) == 2 and set(np.unique(sitk.GetArrayFromImage(mask))) == {0, 1}
    empty = read_mask(write_image(_volume(np.zeros((4, 5, 6), np.uint8)), tmp_path / "empty_msk.nii.gz"))
    assert int(sitk.GetArrayFromImage(empty).sum()) == 0


def test_write_image_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot write"):
        write_image(_volume(_ramp(1.0)), tmp_path / "out.unknownformat")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.realdata
def test_real_isles_case_0009(isles_root: Path) -> None:
    folder = isles_root / "sub-strokecase0009" / "ses-0001" / "dwi"
    dwi_path = folder / "sub-strokecase0009_ses-0001_dwi.nii.gz"
    mask_path = isles_root / "derivatives/sub-strokecase0009/ses-0001/sub-strokecase0009_ses-0001_msk.nii.gz"
    adc_path = folder / "sub-strokecase0009_ses-0001_adc.nii.gz"
    raw = sitk.ReadImage(str(dwi_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteVoxelsWarning)
        dwi = read_image(dwi_path, role="DWI")
        adc = read_image(adc_path, role="ADC")
    mask = read_mask(mask_path)
    for image, path in ((dwi, dwi_path), (adc, adc_path), (mask, mask_path)):
        own = sitk.ReadImage(str(path))  # each file's header exactly, not rounded onto another's
        assert image.GetSize() == own.GetSize() == (112, 112, 73)
        assert image.GetOrigin() == own.GetOrigin() and image.GetDirection() == own.GetDirection()
        assert image.GetSpacing() == own.GetSpacing()
        np.testing.assert_allclose(image.GetDirection(), raw.GetDirection(), atol=1e-6)
    assert dwi.GetPixelID() == adc.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(sitk.GetArrayFromImage(dwi), sitk.GetArrayFromImage(raw), rtol=1e-6)
    assert 0.3 < float(np.median(sitk.GetArrayFromImage(adc)[sitk.GetArrayFromImage(adc) > 0])) < 3  # 10^-3 units
    assert int(sitk.GetArrayFromImage(mask).sum()) == 523


@pytest.mark.realdata
def test_real_nonstripped_int16(nonstripped_case: Path) -> None:
    dwi = read_image(nonstripped_case / "dwi.nii.gz")
    assert dwi.GetSize() == (192, 192, 32) and dwi.GetPixelID() == sitk.sitkFloat32


def test_vector_pixel_dwi_treated_as_series(tmp_path: Path) -> None:
    path = tmp_path / "vec.mha"
    vector = sitk.GetImageFromArray(np.stack([_ramp(4.0), _ramp(1.0)], axis=-1), isVector=True)
    vector.SetDirection(OBLIQUE.ravel().tolist())
    sitk.WriteImage(vector, str(path))
    (tmp_path / "vec.bval").write_text("0\n1000\n")
    image = read_image(path)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), _ramp(1.0))
    np.testing.assert_allclose(np.array(image.GetDirection()).reshape(3, 3), OBLIQUE, atol=1e-6)
    with pytest.raises(InvalidImageError, match="2 volumes"):
        read_image(path, role="ADC")


def test_one_mask_rule_for_expert_masks_and_predictions(tmp_path: Path) -> None:
    """read_mask is the only mask reader (evaluation included): integer labels of any value are lesion, float masks
    are lesion from 0.5 up (a partial-volume rim is not)."""
    from StrokeSegLib.evaluation import scoring

    assert not hasattr(scoring, "read_mask_any_nonzero") and scoring.read_mask is read_mask
    labels = np.zeros((4, 5, 6), np.uint16)
    labels[1, 1, 1], labels[1, 1, 2], labels[2, 2, 2] = 1, 255, 2
    read = sitk.GetArrayFromImage(read_mask(write_image(_volume(labels), tmp_path / "labels_msk.nii.gz")))
    np.testing.assert_array_equal(read, (labels != 0).astype(np.uint8))
    soft = np.zeros((4, 5, 6), np.float32)
    soft[1, 1, 1:4] = (0.49, 0.5, 0.9)
    read = sitk.GetArrayFromImage(read_mask(write_image(_volume(soft), tmp_path / "soft_msk.nii.gz")))
    assert read.dtype == np.uint8 and read.sum() == 2 and read[1, 1, 1] == 0
