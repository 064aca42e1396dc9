"""Finding cases (DWI + ADC, optional expert mask) in the ISLES 2022 folder layouts users actually have.

Two releases of ISLES 2022 exist with different trees; batch runs and evaluation accept either so that a user never has
to reshuffle 250 cases. Only paths are found here; reading is :mod:`imageio`'s job.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import InputFileError

EXPECTED_LAYOUTS = (
    "Zenodo:          <root>/sub-X/ses-Y/dwi/sub-X_ses-Y_dwi.nii.gz and _adc.nii.gz, "
    "masks in <root>/derivatives/sub-X/ses-Y/sub-X_ses-Y_msk.nii.gz",
    "Grand Challenge: <root>/rawdata/sub-X/ses-Y/sub-X_ses-Y_dwi.nii.gz and _adc.nii.gz beside <root>/derivatives/",
)

# Where a DWI may sit, relative to the root (the ADC is always beside it).
_DWI_PATTERNS = (
    "sub-*/ses-*/dwi/sub-*_dwi.nii*",  # Zenodo release
    "sub-*/dwi/sub-*_dwi.nii*",  # BIDS without sessions
    "rawdata/sub-*/ses-*/sub-*_dwi.nii*",  # Grand Challenge release
    "rawdata/sub-*/ses-*/dwi/sub-*_dwi.nii*",  # BIDS-style rawdata
)
_NIFTI = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)


class IncompleteCaseWarning(UserWarning):
    """A case was skipped: a DWI without an ADC (or the reverse), or a case id found twice."""


@dataclass(frozen=True)
class Case:
    """One study: its id (``sub-X_ses-Y``), the DWI and ADC paths, and the expert mask when there is one."""

    case_id: str
    dwi: Path
    adc: Path
    mask: Path | None = None


def _strip_nifti(name: str) -> str:
    return _NIFTI.sub("", name)


def _sibling(path: Path, stem: str) -> Path | None:
    """``stem`` + .nii.gz or .nii in ``path``'s folder, if present."""
    for suffix in (".nii.gz", ".nii"):
        candidate = path.parent / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _find_mask(derivatives: Path, case_id: str) -> Path | None:
    subject = case_id.split("_")[0]
    folder = derivatives / subject
    if not folder.is_dir():
        return None
    hits = sorted(p for p in folder.rglob(f"{case_id}_msk.nii*") if p.is_file() and _NIFTI.search(p.name))
    return hits[0] if hits else None


def _derivatives_folders(root: Path) -> list[Path]:
    folders = [root / "derivatives"]
    if root.name.lower() == "rawdata":  # the user pointed at rawdata/ itself
        folders.append(root.parent / "derivatives")
    return [f for f in folders if f.is_dir()]


def _check_root(root: Path) -> None:
    if not root.exists():
        raise InputFileError("folder not found.", root)
    if not root.is_dir():
        raise InputFileError("is a file; expected the folder that holds the cases (an ISLES 2022 root).", root)


@dataclass(frozen=True)
class IncompleteCase:
    """A study found with only one of DWI/ADC: it cannot be segmented, and ``reason`` says which file is missing."""

    case_id: str
    reason: str


def find_cases(root: str | Path) -> list[Case]:
    """All complete cases under ``root`` in either ISLES 2022 layout, sorted by case id.

    Cases with only one of DWI/ADC are skipped with an :class:`IncompleteCaseWarning` naming them, so one broken
    folder does not stop a batch of 250; masks are optional (``None``).
    """
    cases, incomplete = scan_cases(root)
    if incomplete:
        warnings.warn(
            f"{root}: skipped {len(incomplete)} incomplete case(s): " + "; ".join(i.reason for i in incomplete),
            IncompleteCaseWarning,
            stacklevel=2,
        )
    if not cases:
        raise InputFileError(
            "no cases found (a case needs a DWI and an ADC). Expected one of these layouts:\n  "
            + "\n  ".join(EXPECTED_LAYOUTS),
            root,
        )
    return cases


def scan_cases(root: str | Path) -> tuple[list[Case], list[IncompleteCase]]:
    """Complete and incomplete cases under ``root``, each sorted by case id; a batch run reports the incomplete ones
    as failed rows instead of leaving them out. Raises only when ``root`` is not a folder."""
    root = Path(root)
    _check_root(root)
    search_root = root.parent if root.name.lower() == "rawdata" else root
    derivatives = _derivatives_folders(root)
    found: dict[str, Case] = {}
    incomplete: dict[str, str] = {}
    for pattern in _DWI_PATTERNS:
        for dwi in sorted(search_root.glob(pattern)):
            if not dwi.is_file() or not _NIFTI.search(dwi.name):
                continue
            case_id = _strip_nifti(dwi.name)[: -len("_dwi")]
            adc = _sibling(dwi, f"{case_id}_adc")
            if adc is None:
                incomplete.setdefault(case_id, f"{case_id} (no {case_id}_adc.nii.gz beside {dwi})")
                continue
            if case_id in found:
                warnings.warn(
                    f"{case_id} appears twice ({found[case_id].dwi} and {dwi}); using the first.",
                    IncompleteCaseWarning,
                    stacklevel=2,
                )
                continue
            mask = next((m for d in derivatives if (m := _find_mask(d, case_id)) is not None), None)
            found[case_id] = Case(case_id, dwi, adc, mask)
    for pattern in _DWI_PATTERNS:
        for adc in sorted(search_root.glob(pattern.replace("_dwi", "_adc"))):
            case_id = _strip_nifti(adc.name)[: -len("_adc")]
            if case_id not in found and _sibling(adc, f"{case_id}_dwi") is None:
                incomplete.setdefault(case_id, f"{case_id} (no {case_id}_dwi.nii.gz beside {adc})")
    for case_id in found:  # found complete under another layout pattern
        incomplete.pop(case_id, None)
    return (sorted(found.values(), key=lambda case: case.case_id),
            [IncompleteCase(case_id, incomplete[case_id]) for case_id in sorted(incomplete)])


def case_id_from_path(dwi: str | Path) -> str:
    """``sub-X_ses-Y`` from ``sub-X_ses-Y_dwi.nii.gz``; a bare ``dwi.nii.gz`` is named after its folder."""
    path = Path(dwi)
    stem = _strip_nifti(path.name)
    if stem == path.name:  # not NIfTI: drop the last suffix (.mha, .nrrd)
        stem = path.stem
    stripped = re.sub(r"[_-]?dwi$", "", stem, flags=re.IGNORECASE)
    return stripped or path.parent.name or stem


def case_from_files(
    dwi: str | Path, adc: str | Path, mask: str | Path | None = None, case_id: str | None = None
) -> Case:
    """A case from explicit paths (CLI ``segment``, Slicer); every given file must exist."""
    paths = {"DWI": Path(dwi), "ADC": Path(adc)}
    if mask is not None:
        paths["mask"] = Path(mask)
    for role, path in paths.items():
        if not path.is_file():
            raise InputFileError(f"{role} file not found." if not path.exists() else f"{role} path is not a file.",
                                 path)
    return Case(case_id or case_id_from_path(dwi), paths["DWI"], paths["ADC"], paths.get("mask"))
