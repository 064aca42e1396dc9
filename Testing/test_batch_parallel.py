"""Batch runs at scale: the pipeline computes what the plain loop computes, shards and parallel runs into one folder
take every case exactly once and lose no row, a case that cannot run is a failed row, resume never counts a bad mask."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegLib.apps import batch as batch_module
from StrokeSegLib.apps.batch import parse_shard, run_batch, select_shard
from StrokeSegLib.apps.batch_table import STATE_DIR
from StrokeSegLib.apps.claims import ClaimRegistry
from StrokeSegLib.apps.phantom import make_synthetic_case, write_synthetic_case
from StrokeSegLib.cli import main as strokeseg
from StrokeSegLib.common.errors import CancelledError

PROJECT = Path(__file__).resolve().parents[1]
N_GOOD = 5


def _case_id(i: int) -> str:
    return f"sub-p{i:03d}_ses-0001"


@pytest.fixture(scope="module")
def isles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five good cases, one with a corrupt ADC, one without an ADC."""
    root = tmp_path_factory.mktemp("parallel") / "isles"
    for i in range(N_GOOD + 2):
        write_synthetic_case(make_synthetic_case(seed=40 + i, size=(32, 32, 16)), root, _case_id(i))
    adc = next(root.glob(f"sub-p{N_GOOD:03d}/ses-0001/dwi/*_adc.nii.gz"))
    adc.write_bytes(b"this is not an image")
    next(root.glob(f"sub-p{N_GOOD + 1:03d}/ses-0001/dwi/*_adc.nii.gz")).unlink()
    return root


def _rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "volumes.csv").read_text().splitlines()))


def _without_seconds(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _masks(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*_msk.nii.gz"))}


@pytest.fixture(scope="module")
def sequential(isles: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sequential")
    run_batch(isles, out, tiny_model, prefetch=0, show_progress=False)
    return out


def test_the_pipeline_writes_the_same_masks_and_rows_as_the_plain_loop(isles: Path, tiny_model: Path,
                                                                       sequential: Path, tmp_path: Path) -> None:
    report = run_batch(isles, tmp_path, tiny_model, prefetch=2, show_progress=False)
    assert _masks(tmp_path) == _masks(sequential)  # byte for byte
    assert len(_masks(tmp_path)) == N_GOOD
    assert _without_seconds(_rows(tmp_path)) == _without_seconds(_rows(sequential))
    assert sorted(o.case_id for o in report.outcomes) == [_case_id(i) for i in range(N_GOOD + 2)]
    masks = [sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(tmp_path.glob("*_msk.nii.gz"))]
    assert any(m.any() for m in masks)  # the comparison is not between empty masks only


def test_a_case_that_cannot_run_is_a_failed_row_with_its_reason(isles: Path, sequential: Path, tiny_model: Path,
                                                                 tmp_path: Path) -> None:
    rows = {r["case_id"]: r for r in _rows(sequential)}
    assert len(rows) == N_GOOD + 2
    no_adc = rows[_case_id(N_GOOD + 1)]
    assert no_adc["status"] == "failed" and "no sub-p006_ses-0001_adc" in no_adc["error"]
    assert rows[_case_id(N_GOOD)]["status"] == "failed" and "adc" in rows[_case_id(N_GOOD)]["error"].lower()
    assert all(rows[_case_id(i)]["status"] == "ok" for i in range(N_GOOD))
    assert strokeseg(["batch", str(isles), "--out", str(tmp_path), "--model", str(tiny_model), "--shard", "3/3"]) == 1


def test_three_shards_together_are_one_unsharded_run(isles: Path, sequential: Path, tiny_model: Path,
                                                     tmp_path: Path) -> None:
    ids = [_case_id(i) for i in range(N_GOOD + 2)]

    class Entry:
        def __init__(self, case_id: str) -> None:
            self.case_id = case_id

    parts = [[e.case_id for e in select_shard([Entry(i) for i in reversed(ids)], (k, 3))] for k in (1, 2, 3)]
    assert sorted(sum(parts, [])) == ids and all(parts)  # disjoint, complete, none empty
    for k in (1, 2, 3):
        status = strokeseg(["batch", str(isles), "--out", str(tmp_path), "--model", str(tiny_model),
                            "--shard", f"{k}/3", "--prefetch", "1"])
        assert status == (1 if any(c in parts[k - 1] for c in ids[N_GOOD:]) else 0)
    assert _masks(tmp_path) == _masks(sequential)
    assert _without_seconds(_rows(tmp_path)) == _without_seconds(_rows(sequential))
    (tmp_path / "volumes.csv").unlink()
    (tmp_path / "batch_report.json").write_text("{}")  # the same rows again, as older versions wrote them
    assert strokeseg(["batch", "--merge", str(tmp_path)]) == 1  # two failed cases
    assert _without_seconds(_rows(tmp_path)) == _without_seconds(_rows(sequential))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith("_msk.nii.gz")) == [
        ".strokeseg-batch", "volumes.csv"]  # one table: no second copy of the rows to go stale
    # The shards' runs have ended: a new run without --resume segments their cases again instead of leaving them.
    again = run_batch(isles, tmp_path, tiny_model, shard=(1, 3), show_progress=False)
    assert not again.elsewhere and [o.case_id for o in again.outcomes] == parts[0]


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "2", "a/b"])
def test_a_bad_shard_is_a_usage_error(text: str, isles: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        parse_shard(text)
    with pytest.raises(SystemExit) as exit_info:
        strokeseg(["batch", str(isles), "--out", str(tmp_path), "--shard", text])
    assert exit_info.value.code == 2


_RUNNER = """
import sys, time
from pathlib import Path
go = Path(sys.argv[1])
from StrokeSegLib.cli import main
import StrokeSegLib.apps.batch  # torch and SimpleITK loaded before the start signal, so that the runs start together
while not go.exists():
    time.sleep(0.01)
sys.exit(main(sys.argv[2:]))
"""


def _run_together(commands: list[list[str]], go: Path) -> list[subprocess.CompletedProcess]:
    """Start the commands as processes, let them import everything, then release them at the same moment."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT / "StrokeSeg"), str(PROJECT / "StrokeSegTrain")])}
    procs = [subprocess.Popen([sys.executable, "-c", _RUNNER, str(go), *c], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in commands]
    go.touch()
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=300), *p.communicate()) for p in procs]


def test_runs_at_once_into_one_folder_take_every_case_once_and_lose_no_row(isles: Path, tiny_model: Path,
                                                                          sequential: Path, tmp_path: Path) -> None:
    """Four processes at once: two whole runs into one folder share its cases; two shards into another lose no row."""
    together, shards = tmp_path / "together", tmp_path / "shards"
    whole = ["batch", str(isles), "--out", str(together), "--model", str(tiny_model)]
    shard = ["batch", str(isles), "--out", str(shards), "--model", str(tiny_model), "--shard"]
    results = _run_together([whole, whole, [*shard, "1/2"], [*shard, "2/2"]], tmp_path / "go")
    for out in (together, shards):
        assert _without_seconds(_rows(out)) == _without_seconds(_rows(sequential))  # every case once, no row lost
        assert _masks(out) == _masks(sequential)
        assert not list((out / STATE_DIR / "claims").iterdir())  # every claim released
    pair = results[:2]
    segmented = [int(r.stdout.split(" segmented")[0].split()[-1]) for r in pair]
    failed = [int(r.stdout.split(" failed")[0].split()[-1]) for r in pair]
    assert sum(segmented) == N_GOOD and sum(failed) == 2, [r.stdout + r.stderr for r in pair]  # none ran twice
    assert [r.returncode for r in pair] == [1 if f else 0 for f in failed]


def test_claims_are_exclusive_and_only_dead_or_silent_owners_lose_them(tmp_path: Path) -> None:
    first, second = ClaimRegistry(tmp_path), ClaimRegistry(tmp_path)
    try:
        assert first.claim("sub-a_ses-1") is None
        owner = second.claim("sub-a_ses-1")
        assert owner is not None and owner.token == first.me.token
        first.release("sub-a_ses-1")
        assert second.claim("sub-a_ses-1") is None

        # A claim left by a process of this host that has ended is taken over at once.
        ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead = first.path("sub-b_ses-1")
        dead.write_text(f'{{"host": "{first.me.host}", "pid": {int(ended.stdout)}, "token": "gone"}}')
        assert second.claim("sub-b_ses-1") is None
        # One from another host is live while it is refreshed, stale once it has not been for too long.
        remote = first.path("sub-c_ses-1")
        remote.write_text('{"host": "elsewhere.example", "pid": 1, "token": "remote"}')
        assert second.claim("sub-c_ses-1").host == "elsewhere.example"
        old = remote.stat().st_mtime - second.stale_after_s - 60
        os.utime(remote, (old, old))
        assert second.claim("sub-c_ses-1") is None
        assert not list(tmp_path.glob("claims/*.stale-*"))
        # A run is alive while its marker is fresh; a marker left by an ended process of this host is not.
        assert second.run_alive(first.run_id) and first.run_alive(first.run_id)
        assert not second.run_alive("no-such-run")
        (tmp_path / "runs" / "gone.run").write_text(
            f'{{"host": "{first.me.host}", "pid": {int(ended.stdout)}, "token": "gone"}}')
        assert not second.run_alive("gone")
    finally:
        first.close()
        second.close()
    assert not list((tmp_path / "claims").iterdir())  # close() released what was held


def test_resume_redoes_an_unreadable_or_foreign_mask_and_never_counts_it(isles: Path, sequential: Path,
                                                                         tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch(isles, out, tiny_model, shard=(1, 2), show_progress=False)  # cases 0, 2, 4 and 6 (no ADC)
    garbage, foreign, kept = (out / f"{_case_id(i)}_msk.nii.gz" for i in (0, 2, 4))
    assert garbage.is_file() and foreign.is_file() and kept.is_file()
    garbage.write_bytes(b"\x1f\x8b truncated")
    sitk.WriteImage(sitk.Image(8, 8, 8, sitk.sitkUInt8), str(foreign))
    before = kept.stat().st_mtime_ns
    report = run_batch(isles, out, tiny_model, resume=True, shard=(1, 2), show_progress=False)
    status = {o.case_id: o.status for o in report.outcomes}
    assert status == {_case_id(0): "ok", _case_id(2): "ok", _case_id(4): "skipped", _case_id(6): "failed"}
    assert kept.stat().st_mtime_ns == before
    assert garbage.read_bytes() == (sequential / garbage.name).read_bytes()
    assert foreign.read_bytes() == (sequential / foreign.name).read_bytes()


def test_a_worker_error_is_that_case_s_failed_row_and_cancel_stops_every_thread(
        isles: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_prepare = batch_module.prepare_inputs

    def flaky(dwi, adc, loaded, options, **kwargs):
        if _case_id(1) in str(kwargs["dwi_path"]):
            raise RuntimeError("worker exploded")
        return real_prepare(dwi, adc, loaded, options, **kwargs)

    monkeypatch.setattr(batch_module, "prepare_inputs", flaky)
    report = run_batch(isles, tmp_path / "a", tiny_model, prefetch=1, show_progress=False)
    rows = {r["case_id"]: r for r in _rows(tmp_path / "a")}
    assert rows[_case_id(1)]["status"] == "failed" and "RuntimeError: worker exploded" in rows[_case_id(1)]["error"]
    assert rows[_case_id(2)]["status"] == "ok" and len(report.outcomes) == N_GOOD + 2

    cancel = threading.Event()
    real_predict = batch_module.predict_prepared

    def cancelling(inputs, loaded, options, cancel=None):
        result = real_predict(inputs, loaded, options, cancel=cancel)
        cancel.set()  # the user presses Cancel during the first case
        return result

    monkeypatch.setattr(batch_module, "predict_prepared", cancelling)
    with pytest.raises(CancelledError):
        run_batch(isles, tmp_path / "b", tiny_model, prefetch=2, cancel=cancel, show_progress=False)
    assert not [t for t in threading.enumerate() if t.name.startswith("strokeseg-")]
    assert not list((tmp_path / "b" / STATE_DIR / "claims").iterdir())
    assert len(_rows(tmp_path / "b")) <= 1  # what was recorded before the cancel is in the table, nothing else
    assert not np.any([p.name.startswith(".") for p in (tmp_path / "b").glob("*_msk*")])
    with pytest.raises(CancelledError):  # cancelled before any row: the cancel, not a missing-table error
        run_batch(isles, tmp_path / "c", tiny_model, prefetch=1, cancel=cancel, show_progress=False)
    assert _rows(tmp_path / "c") == []


def test_the_next_case_is_prepared_while_one_is_predicted_and_the_queue_stays_bounded(
        isles: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prediction of a case waits until the next case's preparation has begun: only a pipeline can get past that
    (the plain loop would wait in vain); and the reader never runs more than ``prefetch + 1`` cases ahead."""
    real_prepare, real_predict = batch_module.prepare_inputs, batch_module.predict_prepared
    lock = threading.Lock()
    started = {"prepare": 0, "predict": 0}
    ahead: list[int] = []
    next_prepared = [threading.Event() for _ in range(N_GOOD + 1)]

    def prepare(*args, **kwargs):
        with lock:
            started["prepare"] += 1
            ahead.append(started["prepare"] - started["predict"])
            next_prepared[started["prepare"] - 1].set()
        return real_prepare(*args, **kwargs)

    def predict(*args, **kwargs):
        with lock:
            started["predict"] += 1
            k = started["predict"]
        overlapped = next_prepared[k].wait(timeout=20) if k < N_GOOD else True
        assert overlapped, f"case {k + 1} was not being prepared while case {k} was predicted"
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(batch_module, "prepare_inputs", prepare)
    monkeypatch.setattr(batch_module, "predict_prepared", predict)
    report = run_batch(isles, tmp_path, tiny_model, prefetch=1, show_progress=False)
    assert [o.status for o in report.outcomes].count("ok") == N_GOOD
    # Bounded: as predict k starts, k+1 may be queued, k+2 prepared and waiting to be queued, k+3 begun -- no more.
    assert 1 <= max(ahead) <= 3


def test_a_device_this_machine_lacks_fails_the_batch_up_front(isles: Path, tiny_model: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert strokeseg(["batch", str(isles), "--out", str(tmp_path), "--model", str(tiny_model), "--device", "cuda"]) == 2
    assert not (tmp_path / "volumes.csv").exists()  # no case was tried, so no row says "failed"
