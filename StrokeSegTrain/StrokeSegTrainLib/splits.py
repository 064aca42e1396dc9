"""Patient-level K-fold splits, written once to ``splits.json`` and reused by every later run.

Sessions of one patient are strongly correlated (same anatomy, often the same lesion), so a split that puts one
session in training and another in validation leaks the answer. Folds are therefore made of patients (the ``sub-X``
part of a BIDS case id), and the file is reused so that all folds of a cross-validation, resumed runs and later
comparisons see exactly the same partition.
"""
from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from StrokeSegLib.common.atomic import write_json_atomic
from StrokeSegLib.common.errors import StrokeSegError

SPLITS_FORMAT = 1
_SUBJECT = re.compile(r"(sub-[^_/\\]+)")


def patient_id(case_id: str) -> str:
    """The ``sub-X`` part of a case id (``sub-strokecase0001_ses-0002`` -> ``sub-strokecase0001``); else the id."""
    match = _SUBJECT.search(case_id)
    return match.group(1) if match else case_id


def make_splits(case_ids: list[str], num_folds: int = 5, seed: int = 12345) -> list[dict[str, list[str]]]:
    """Split cases into ``num_folds`` folds of whole patients with balanced case counts.

    Patients are shuffled with ``seed`` and then dealt, largest first, to the fold holding the fewest cases, so fold
    sizes differ by at most one patient's sessions. Returns ``[{"train": [...], "val": [...]}, ...]`` with sorted ids.
    """
    if len(set(case_ids)) != len(case_ids):
        raise StrokeSegError("Duplicate case ids; every case needs a unique id")
    by_patient: dict[str, list[str]] = defaultdict(list)
    for case_id in sorted(case_ids):
        by_patient[patient_id(case_id)].append(case_id)
    if len(by_patient) < num_folds:
        raise StrokeSegError(f"{num_folds}-fold cross-validation needs at least {num_folds} patients; "
                             f"found {len(by_patient)} ({len(case_ids)} cases)")
    patients = sorted(by_patient)
    random.Random(seed).shuffle(patients)
    # Stable sort keeps the shuffled order among patients with equally many sessions.
    patients.sort(key=lambda p: -len(by_patient[p]))
    folds: list[list[str]] = [[] for _ in range(num_folds)]
    for patient in patients:
        smallest = min(range(num_folds), key=lambda k: (len(folds[k]), k))
        folds[smallest].extend(by_patient[patient])
    all_ids = sorted(case_ids)
    splits = []
    for fold in folds:
        val = set(fold)
        splits.append({"train": [c for c in all_ids if c not in val], "val": sorted(val)})
    return splits


def load_or_create_splits(path: str | Path, case_ids: list[str], num_folds: int = 5,
                          seed: int = 12345) -> list[dict[str, list[str]]]:
    """Reuse ``path`` when it exists and describes exactly these cases; otherwise create and write it.

    A file made for a different set of cases is refused rather than silently replaced: its folds may already have
    trained models, and mixing two partitions would leak validation cases into training.
    """
    path = Path(path)
    if path.is_file():
        data = _read(path)
        folds = data["folds"]
        known = sorted({c for fold in folds for c in fold["val"]})
        if known != sorted(case_ids):
            missing = sorted(set(case_ids) - set(known))
            extra = sorted(set(known) - set(case_ids))
            raise StrokeSegError(
                f"splits file describes other cases (not in file: {missing[:5]}{'...' if len(missing) > 5 else ''}; "
                f"in file but not found: {extra[:5]}{'...' if len(extra) > 5 else ''}); "
                "use a new output folder or delete the file to re-split", path)
        if len(folds) != num_folds:
            raise StrokeSegError(f"splits file has {len(folds)} folds but {num_folds} were requested", path)
        return folds
    folds = make_splits(case_ids, num_folds, seed)
    write_json_atomic(path, {"format": SPLITS_FORMAT, "num_folds": num_folds, "seed": seed,
                             "grouping": "patient (sub-X part of the case id)", "folds": folds})
    return folds


def _read(path: Path) -> dict[str, Any]:
    """Parse and sanity-check a splits file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        folds = data["folds"]
        if not all(isinstance(f["train"], list) and isinstance(f["val"], list) for f in folds):
            raise ValueError("each fold needs 'train' and 'val' lists")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StrokeSegError(f"not a valid splits file: {exc}", path) from exc
    return data
