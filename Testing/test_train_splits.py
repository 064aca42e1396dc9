"""Patient-level splits: no patient straddles folds, the split is reproducible, and the file is reused."""
from __future__ import annotations

import json

import pytest

from StrokeSegLib.common.errors import StrokeSegError
from StrokeSegTrainLib.splits import load_or_create_splits, make_splits, patient_id


def _ids() -> list[str]:
    ids = []
    for p in range(11):
        for s in range(1 + p % 3):  # 1-3 sessions per patient
            ids.append(f"sub-strokecase{p:04d}_ses-{s + 1:04d}")
    return ids


def test_patient_id() -> None:
    assert patient_id("sub-strokecase0001_ses-0002") == "sub-strokecase0001"
    assert patient_id("plainname") == "plainname"


def test_folds_are_patient_level_disjoint_and_complete() -> None:
    ids = _ids()
    folds = make_splits(ids, num_folds=5, seed=7)
    assert len(folds) == 5
    all_val = [c for f in folds for c in f["val"]]
    assert sorted(all_val) == sorted(ids)  # each case validated exactly once
    for k, fold in enumerate(folds):
        assert set(fold["train"]) | set(fold["val"]) == set(ids)
        assert not set(fold["train"]) & set(fold["val"])
        train_patients = {patient_id(c) for c in fold["train"]}
        assert not train_patients & {patient_id(c) for c in fold["val"]}, f"patient straddles fold {k}"
    sizes = [len(f["val"]) for f in folds]
    assert max(sizes) - min(sizes) <= 3  # at most one patient's sessions apart


def test_reproducible_and_seed_dependent() -> None:
    ids = _ids()
    assert make_splits(ids, 5, seed=1) == make_splits(list(reversed(ids)), 5, seed=1)
    assert make_splits(ids, 5, seed=1) != make_splits(ids, 5, seed=2)


def test_file_is_written_then_reused(tmp_path) -> None:
    ids = _ids()
    path = tmp_path / "splits.json"
    first = load_or_create_splits(path, ids, 5, seed=3)
    data = json.loads(path.read_text())
    data["folds"][0], data["folds"][1] = data["folds"][1], data["folds"][0]  # an edited file must be respected
    path.write_text(json.dumps(data))
    second = load_or_create_splits(path, ids, 5, seed=999)
    assert second[0] == first[1] and second[1] == first[0]
    with pytest.raises(StrokeSegError, match="other cases"):
        load_or_create_splits(path, ids[:-1], 5)


def test_too_few_patients() -> None:
    with pytest.raises(StrokeSegError, match="at least 5 patients"):
        make_splits(["sub-a_ses-1", "sub-a_ses-2", "sub-b_ses-1"], 5)
