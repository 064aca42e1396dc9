"""`strokeseg-train cv` end to end (every case validated once, pooled report like `strokeseg evaluate`), and errors."""
from __future__ import annotations

import csv
import json

from train_fixtures import CASE_IDS, single_thread, tiny_config, write_synthetic_root  # noqa: F401

from StrokeSegLib.evaluation.scoring import CSV_COLUMNS
from StrokeSegTrainLib.cli import main


def test_cv_pools_every_case_once(tmp_path, capsys) -> None:
    root = write_synthetic_root(tmp_path / "isles")
    config = tiny_config(num_folds=2, iterations_per_epoch=1, validate_every=1).to_dict()
    (tmp_path / "config.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    code = main(["cv", "--data", str(root), "--out", str(out), "--config", str(tmp_path / "config.json"),
                 "--epochs", "1", "--device", "cpu", "--quiet"])
    assert code == 0
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert sorted(r["case_id"] for r in rows) == sorted(CASE_IDS)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == len(CASE_IDS) and set(summary["folds"]) == {"0", "1"}
    assert {"mean", "median", "lesion_cases", "missing", "failed"} <= set(summary)
    for fold in (0, 1):
        assert (out / f"fold_{fold}" / "model.safetensors").is_file()
    assert json.loads((out / "fold_1" / "config.json").read_text())["epochs"] == 1
    assert "cross-validation: 6 cases" in capsys.readouterr().out

    # A second `cv --resume` keeps the finished folds and only re-pools.
    stamp = (out / "fold_0" / "checkpoint.pt").stat().st_mtime_ns
    assert main(["cv", "--data", str(root), "--out", str(out), "--config", str(tmp_path / "config.json"),
                 "--epochs", "1", "--device", "cpu", "--quiet", "--resume"]) == 0
    assert (out / "fold_0" / "checkpoint.pt").stat().st_mtime_ns == stamp

    code = main(["train", "--data", str(root), "--out", str(out), "--config", str(tmp_path / "config.json"),
                 "--fold", "5", "--device", "cpu"])
    assert code == 2 and "fold must be between 0 and 1" in capsys.readouterr().err


def test_train_prints_the_panels_progress_lines_and_stops_on_its_cancel_file(tmp_path, capsys) -> None:
    from StrokeSegLib.common.progress import parse_progress_line

    root = write_synthetic_root(tmp_path / "isles")
    (tmp_path / "config.json").write_text(json.dumps(tiny_config(num_folds=2, iterations_per_epoch=1).to_dict()))
    common = ["train", "--data", str(root), "--config", str(tmp_path / "config.json"), "--epochs", "1",
              "--device", "cpu", "--progress", "machine"]
    assert main([*common, "--out", str(tmp_path / "run")]) == 0
    progress = [p for p in map(parse_progress_line, capsys.readouterr().out.splitlines()) if p]
    assert ("Training", 1.0) in progress, progress[-5:]

    (tmp_path / "cancel").touch()
    assert main([*common, "--out", str(tmp_path / "cancelled"), "--cancel-file", str(tmp_path / "cancel")]) == 130
    assert "Cancelled" in capsys.readouterr().err
