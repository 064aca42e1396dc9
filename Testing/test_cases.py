"""cases: both ISLES 2022 layouts are found, incomplete cases are named, and bad roots give clear errors."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from StrokeSegLib.common.errors import InputFileError
from StrokeSegLib.io.cases import Case, IncompleteCaseWarning, case_from_files, case_id_from_path, find_cases


def _touch(path: Path) -> Path:
    """Finding cases only looks at names, so placeholder files are enough here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"placeholder")
    return path


def _zenodo(root: Path, subject: str, session: str = "ses-0001", mask: bool = True, adc: bool = True) -> None:
    cid = f"{subject}_{session}"
    _touch(root / subject / session / "dwi" / f"{cid}_dwi.nii.gz")
    if adc:
        _touch(root / subject / session / "dwi" / f"{cid}_adc.nii.gz")
    if mask:
        _touch(root / "derivatives" / subject / session / f"{cid}_msk.nii.gz")


def _grand_challenge(root: Path, subject: str, session: str = "ses-0001", mask: bool = True) -> None:
    cid = f"{subject}_{session}"
    _touch(root / "rawdata" / subject / session / f"{cid}_dwi.nii.gz")
    _touch(root / "rawdata" / subject / session / f"{cid}_adc.nii.gz")
    _touch(root / "rawdata" / subject / session / f"{cid}_flair.nii.gz")
    if mask:
        _touch(root / "derivatives" / subject / session / f"{cid}_msk.nii.gz")


def test_zenodo_layout_sorted_with_optional_masks(tmp_path: Path) -> None:
    _zenodo(tmp_path, "sub-strokecase0010")
    _zenodo(tmp_path, "sub-strokecase0002", mask=False)
    _zenodo(tmp_path, "sub-strokecase0005", session="ses-0002")
    cases = find_cases(tmp_path)
    assert [c.case_id for c in cases] == [
        "sub-strokecase0002_ses-0001",
        "sub-strokecase0005_ses-0002",
        "sub-strokecase0010_ses-0001",
    ]
    assert cases[0].mask is None
    assert cases[1].mask == tmp_path / "derivatives/sub-strokecase0005/ses-0002/sub-strokecase0005_ses-0002_msk.nii.gz"
    assert cases[2].adc == tmp_path / "sub-strokecase0010/ses-0001/dwi/sub-strokecase0010_ses-0001_adc.nii.gz"


def test_grand_challenge_layout_from_root_and_from_rawdata(tmp_path: Path) -> None:
    _grand_challenge(tmp_path, "sub-strokecase0001")
    _grand_challenge(tmp_path, "sub-strokecase0004", mask=False)
    for root in (tmp_path, tmp_path / "rawdata"):
        cases = find_cases(root)
        assert [c.case_id for c in cases] == ["sub-strokecase0001_ses-0001", "sub-strokecase0004_ses-0001"]
        first = cases[0]
        assert first.dwi == tmp_path / "rawdata/sub-strokecase0001/ses-0001/sub-strokecase0001_ses-0001_dwi.nii.gz"
        assert first.mask == tmp_path / "derivatives/sub-strokecase0001/ses-0001/sub-strokecase0001_ses-0001_msk.nii.gz"
        assert cases[1].mask is None


def test_grand_challenge_layout_of_symlinked_real_case(isles_root: Path, tmp_path: Path) -> None:
    real = isles_root / "sub-strokecase0009" / "ses-0001" / "dwi"
    cid = "sub-strokecase0009_ses-0001"
    folder = tmp_path / "rawdata" / "sub-strokecase0009" / "ses-0001"
    folder.mkdir(parents=True)
    for kind in ("dwi", "adc"):
        os.symlink(real / f"{cid}_{kind}.nii.gz", folder / f"{cid}_{kind}.nii.gz")
    masks = tmp_path / "derivatives" / "sub-strokecase0009" / "ses-0001"
    masks.mkdir(parents=True)
    os.symlink(isles_root / "derivatives/sub-strokecase0009/ses-0001" / f"{cid}_msk.nii.gz",
               masks / f"{cid}_msk.nii.gz")
    (case,) = find_cases(tmp_path)
    assert case.case_id == cid and case.mask is not None and case.mask.resolve().is_file()


def test_incomplete_cases_are_skipped_and_named(tmp_path: Path) -> None:
    _zenodo(tmp_path, "sub-a")
    _zenodo(tmp_path, "sub-b", adc=False)
    _touch(tmp_path / "sub-c/ses-0001/dwi/sub-c_ses-0001_adc.nii.gz")
    with pytest.warns(IncompleteCaseWarning) as record:
        cases = find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["sub-a_ses-0001"]
    message = " ".join(str(w.message) for w in record)
    assert "sub-b_ses-0001" in message and "sub-c_ses-0001" in message


def test_missing_root_and_file_root(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="folder not found") as info:
        find_cases(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)
    with pytest.raises(InputFileError, match="is a file"):
        find_cases(_touch(tmp_path / "x.nii.gz"))


def test_no_cases_lists_expected_layouts(tmp_path: Path) -> None:
    _touch(tmp_path / "random" / "scan.nii.gz")
    with pytest.raises(InputFileError, match="no cases found") as info:
        find_cases(tmp_path)
    assert "Zenodo" in str(info.value) and "Grand Challenge" in str(info.value) and "rawdata" in str(info.value)


def test_case_from_files(tmp_path: Path) -> None:
    dwi = _touch(tmp_path / "sub-9_ses-2_dwi.nii.gz")
    adc = _touch(tmp_path / "sub-9_ses-2_adc.nii.gz")
    case = case_from_files(dwi, adc)
    assert case == Case("sub-9_ses-2", dwi, adc, None)
    assert case_from_files(str(dwi), str(adc), case_id="mine").case_id == "mine"
    with pytest.raises(InputFileError, match="mask file not found"):
        case_from_files(dwi, adc, mask=tmp_path / "none_msk.nii.gz")
    with pytest.raises(InputFileError, match="ADC file not found") as info:
        case_from_files(dwi, tmp_path / "gone.nii.gz")
    assert str(tmp_path / "gone.nii.gz") in str(info.value)
    with pytest.raises(AttributeError):
        case.case_id = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a/sub-1_ses-0001_dwi.nii.gz", "sub-1_ses-0001"),
        ("a/patient7_DWI.nii", "patient7"),
        ("a/scan-dwi.mha", "scan"),
        ("subject02/dwi.nii.gz", "subject02"),
        ("a/trace.nrrd", "trace"),
    ],
)
def test_case_id_from_path(path: str, expected: str) -> None:
    assert case_id_from_path(path) == expected


@pytest.mark.realdata
def test_real_isles_root_has_three_cases_with_masks(isles_root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteCaseWarning)
        cases = find_cases(isles_root)
    assert [c.case_id for c in cases] == [f"sub-strokecase000{i}_ses-0001" for i in (2, 3, 9)]
    for case in cases:
        assert case.dwi.is_file() and case.adc.is_file() and case.mask is not None and case.mask.is_file()
        assert "FLAIR" not in case.dwi.name
