"""Whole DDP runs on 2 CPU processes (gloo) started the way torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT in each process's environment): a resumed run equals an uninterrupted one, ``cv`` trains two folds
with one process group and pools once, and validation is shared between the processes.

The processes are forked from the test so that they do not pay torch's start-up again; ``test_train_distributed``
runs the real ``torchrun`` command line.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import SimpleITK as sitk
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from train_fixtures import run_forked, single_thread, tiny_config, write_synthetic_root  # noqa: F401

from StrokeSegTrainLib.checkpoint import load_checkpoint
from StrokeSegTrainLib.cross_validation import run_cv
from StrokeSegTrainLib.data_cache import build_cache
from StrokeSegTrainLib.dataset import load_training_cases
from StrokeSegTrainLib.history import History
from StrokeSegTrainLib.trainer import train
from StrokeSegTrainLib.validation import ValidationResult

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    # Warm here the imports a run pays on first use (deterministic mode imports torch's compiler package, the
    # report matplotlib), so that the forked processes inherit them instead of each importing them again.
    import matplotlib.pyplot  # noqa: F401
    import torch._inductor.config  # noqa: F401

    return write_synthetic_root(tmp_path_factory.mktemp("isles"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, data_root) -> Path:
    """Preprocessed once here, so the forked processes only read it."""
    folder = tmp_path_factory.mktemp("cache")
    build_cache(load_training_cases(data_root), folder, tiny_config().preprocess, tiny_config().cache_dtype)
    return folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, job: Callable[[], Any], results: Any) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # no ITK thread pool carried over the fork
    logging.getLogger("StrokeSegTrainLib").setLevel(logging.INFO)  # as the command line sets it
    inits = []
    original = dist.init_process_group

    def counting_init(*args: Any, **kwargs: Any) -> None:
        inits.append(1)
        original(*args, **kwargs)

    dist.init_process_group = counting_init
    try:
        outcome = job()
        results[rank] = {"outcome": outcome, "inits": len(inits), "group_left": dist.is_initialized()}
    except BaseException:  # report, then fail the process so the test sees it
        results[rank] = {"error": traceback.format_exc()}
        raise


def run_ranks(job: Callable[[], Any], world: int = 2) -> dict[int, dict[str, Any]]:
    """Run ``job()`` in ``world`` forked processes with torchrun's environment; each rank's result."""
    with mp.Manager() as manager:
        results = manager.dict()
        try:
            run_forked(_rank_main, (world, _free_port(), job, results), processes=world)
        finally:
            collected = dict(results)
    errors = [r["error"] for r in collected.values() if "error" in r]
    assert not errors, errors[0]
    return collected


def test_resumed_ddp_run_equals_uninterrupted(data_root, cache_dir, tmp_path) -> None:
    one, two = tiny_config(epochs=1), tiny_config(epochs=2)

    def fit(config, out: Path, resume: bool = False) -> Callable[[], Any]:
        return lambda: train(config, data_root, out, 0, device="cpu", cache_dir=cache_dir, resume=resume).best_dice

    straight = run_ranks(fit(two, tmp_path / "a"))
    run_ranks(fit(one, tmp_path / "b"))
    assert load_checkpoint(tmp_path / "b" / "fold_0" / "checkpoint.pt")["epoch"] == 1
    resumed = run_ranks(fit(two, tmp_path / "b", resume=True))

    assert all(r["inits"] == 1 and not r["group_left"] for r in (*straight.values(), *resumed.values()))
    assert straight[0]["outcome"] == resumed[0]["outcome"] == resumed[1]["outcome"]
    a = History(json.loads((tmp_path / "a" / "fold_0" / "history.json").read_text()))
    b = History(json.loads((tmp_path / "b" / "fold_0" / "history.json").read_text()))
    assert json.dumps(a.without_timing()) == json.dumps(b.without_timing())
    state_a = load_checkpoint(tmp_path / "a" / "fold_0" / "checkpoint.pt")
    state_b = load_checkpoint(tmp_path / "b" / "fold_0" / "checkpoint.pt")
    assert state_b["world_size"] == 2 and state_b["epoch"] == 2
    for name, tensor in state_a["model"].items():
        assert torch.equal(tensor, state_b["model"][name]), name
    assert "DDP: model replicas identical on 2 processes" in (tmp_path / "b" / "fold_0" / "train.log").read_text()

    # A finished run whose report went missing validates again at the end, shared by both processes.
    validation = tmp_path / "b" / "fold_0" / "validation"
    (validation / "summary.json").unlink()
    for old in (validation / "predictions").iterdir():
        old.unlink()
    run_ranks(fit(two, tmp_path / "b", resume=True))
    val_cases = json.loads((tmp_path / "b" / "splits.json").read_text())["folds"][0]["val"]
    assert json.loads((validation / "summary.json").read_text())["best_epoch"] == state_b["best_epoch"]
    assert sorted(line.split(",")[0] for line in (validation / "metrics.csv").read_text().splitlines()[1:]) \
        == sorted(val_cases)
    assert sorted(p.name for p in (validation / "predictions").iterdir()) == sorted(f"{c}_msk.nii.gz"
                                                                                    for c in val_cases)


def test_cv_trains_two_folds_in_one_process_group_and_pools_once(data_root, cache_dir, tmp_path) -> None:
    config = tiny_config(epochs=1)
    out = tmp_path / "cv"

    def job() -> Any:
        result = run_cv(config, data_root, out, [0, 1], device="cpu", cache_dir=cache_dir)
        return len(result.rows)

    results = run_ranks(job)
    assert [results[r]["inits"] for r in (0, 1)] == [1, 1], "one process group for the whole cross-validation"
    assert not any(results[r]["group_left"] for r in (0, 1)), "the group cv created is destroyed at the end"
    splits = json.loads((out / "splits.json").read_text())["folds"]
    expected = sorted(splits[0]["val"] + splits[1]["val"])
    assert results[0]["outcome"] == len(expected) and results[1]["outcome"] == 0, "rank 0 alone pools"
    pooled = (out / "metrics.csv").read_text().splitlines()[1:]
    assert sorted(line.split(",")[0] for line in pooled) == expected
    for fold in (0, 1):
        assert (out / f"fold_{fold}" / "DONE").is_file()
        written = sorted(p.name for p in (out / f"fold_{fold}" / "validation" / "predictions").iterdir())
        assert written == sorted(f"{c}_msk.nii.gz" for c in splits[fold]["val"]), "both ranks' predictions"


def test_validation_parts_merge_in_case_order() -> None:
    parts = [ValidationResult(rows=[{"case_id": "c"}, {"case_id": "a"}], case_losses=[3.0, 1.0],
                              predictions={"c": "mask-c", "a": "mask-a"}),
             ValidationResult(rows=[{"case_id": "b"}], case_losses=[2.0], predictions={"b": "mask-b"})]
    merged = ValidationResult.merged(parts, ["a", "b", "c"])
    assert [r["case_id"] for r in merged.rows] == ["a", "b", "c"]
    assert merged.case_losses == [1.0, 2.0, 3.0] and merged.loss == 2.0
    assert set(merged.predictions) == {"a", "b", "c"}
