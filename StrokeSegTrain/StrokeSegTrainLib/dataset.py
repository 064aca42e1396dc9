"""The training cases: from an ISLES 2022 root (either release layout) or a CSV of paths.

Training needs an expert mask for every case; cases without one are left out with a warning naming them instead of
failing a long run half-way through.
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

from StrokeSegLib.common.errors import InputFileError
from StrokeSegLib.io.cases import Case, case_from_files, find_cases

CSV_COLUMNS = ("case_id", "dwi", "adc", "mask")


class MissingMaskWarning(UserWarning):
    """A case found in the data has no expert mask and cannot be used for training."""


def read_case_csv(path: str | Path) -> list[Case]:
    """Cases from a CSV with header ``case_id,dwi,adc,mask``; relative paths are relative to the CSV's folder."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputFileError(f"CSV lacks column(s) {', '.join(missing)}; expected header "
                                     f"{','.join(CSV_COLUMNS)}", path)
            rows = list(reader)
    except OSError as exc:
        raise InputFileError(f"cannot read case list: {exc}", path) from exc
    cases = []
    for line, row in enumerate(rows, start=2):
        values = {k: (row.get(k) or "").strip() for k in CSV_COLUMNS}
        if not values["dwi"] or not values["adc"]:
            raise InputFileError(f"line {line}: dwi and adc paths are required", path)
        def resolve(p: Path) -> Path:
            return p if p.is_absolute() else path.parent / p

        mask = resolve(Path(values["mask"])) if values["mask"] else None
        try:
            cases.append(case_from_files(resolve(Path(values["dwi"])), resolve(Path(values["adc"])), mask,
                                         values["case_id"] or None))
        except InputFileError as exc:
            raise InputFileError(f"line {line}: {exc}", path) from exc
    ids = [c.case_id for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InputFileError(f"duplicate case ids: {', '.join(duplicates)}", path)
    return sorted(cases, key=lambda c: c.case_id)


def load_training_cases(data: str | Path) -> list[Case]:
    """Cases with masks from an ISLES root folder or a ``.csv`` file, sorted by id."""
    data = Path(data)
    cases = read_case_csv(data) if data.suffix.lower() == ".csv" else find_cases(data)
    unlabelled = [c.case_id for c in cases if c.mask is None]
    if unlabelled:
        warnings.warn(f"{data}: {len(unlabelled)} case(s) without an expert mask left out of training: "
                      f"{', '.join(unlabelled[:10])}{'...' if len(unlabelled) > 10 else ''}", MissingMaskWarning,
                      stacklevel=2)
    labelled = [c for c in cases if c.mask is not None]
    if not labelled:
        raise InputFileError("no case has an expert mask; training needs masks", data)
    return labelled
