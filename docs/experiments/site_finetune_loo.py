"""What a site gains by fine-tuning the starter model on its own scans: leave-one-out over an ISLES root.

    python docs/experiments/site_finetune_loo.py --data ../shared/data/ISLES-2022 --out output/loo \
        [--model strokeseg-starter] [--config StrokeSegTrain/Resources/site_finetune_config.json]

For each case: fine-tune ``--model`` on all the other cases (``strokeseg-train train --init-from``, one fold per case
in a written ``splits.json``), segment the held-out case with the starter and with the fine-tuned model, and score
both with ``strokeseg evaluate``. Writes ``loo.csv`` (case, Dice and lesion F1 before and after) and prints the means.
The fine-tuned models are measurements of the fine-tuning path only; none is ever shipped.

The trainer needs a validation case and the only case left is the held-out one, so the configuration is forced to
validate once, after the last epoch (``validate_every`` = ``epochs``, no early stopping, no plateau scheduler): the
exported weights are those of the last epoch (or the average of the last epochs), never chosen on the held-out case.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

from StrokeSegLib.io.cases import find_cases


def _run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", *args], check=True)


def _score(pred_dir: Path, gt_root: Path, case_id: str, out: Path) -> dict[str, float]:
    # evaluate exits 1 because the other cases have no prediction here (scored as empty); only this case is read
    subprocess.run([sys.executable, "-m", "StrokeSegLib.cli", "evaluate", "--pred", str(pred_dir), "--gt",
                    str(gt_root), "--out", str(out)], check=False)
    with open(out / "metrics.csv", newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["case_id"] == case_id)
    return {"dice": float(row["dice"]), "lesion_f1": float(row["lesion_f1"])}


def without_selection(config: dict) -> dict:
    """``config`` changed so that validation on the held-out case can choose nothing (see the module docstring)."""
    epochs = int(config.get("epochs", 300))
    if config.get("optim", {}).get("scheduler", "plateau") == "plateau":
        raise SystemExit("the plateau scheduler steps on the validation Dice (here the held-out case): use 'poly'")
    return {**config, "validate_every": epochs, "early_stopping_patience": epochs + 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="strokeseg-starter")
    parser.add_argument("--config", type=Path, default=Path("StrokeSegTrain/Resources/site_finetune_config.json"))
    args = parser.parse_args()
    cases = [c for c in find_cases(args.data) if c.mask is not None]
    run = args.out / "run"
    run.mkdir(parents=True, exist_ok=True)
    table = args.out / "cases.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "dwi", "adc", "mask"])
        for c in cases:
            writer.writerow([c.case_id, c.dwi, c.adc, c.mask])
    # one fold per case, each holding that case out (the trainer reuses a splits.json that covers all cases)
    ids = sorted(c.case_id for c in cases)
    folds = [{"train": [i for i in ids if i != held], "val": [held]} for held in ids]
    (run / "splits.json").write_text(json.dumps({"format": 1, "num_folds": len(ids), "seed": 0, "folds": folds}))
    config = {**without_selection(json.loads(args.config.read_text())), "num_folds": len(ids)}
    (args.out / "config.json").write_text(json.dumps(config, indent=1))
    rows = []
    for fold, held_id in enumerate(ids):
        held = next(c for c in cases if c.case_id == held_id)
        _run("StrokeSegTrainLib.cli", "train", "--data", str(table), "--out", str(run), "--fold", str(fold),
             "--config", str(args.out / "config.json"), "--init-from", args.model, "--quiet")
        tuned = run / f"fold_{fold}" / "model.safetensors"
        scores = {}
        for name, model in (("before", args.model), ("after", str(tuned))):
            pred = args.out / held_id / f"pred_{name}"
            pred.mkdir(parents=True, exist_ok=True)
            _run("StrokeSegLib.cli", "segment", "--dwi", str(held.dwi), "--adc", str(held.adc), "--model", model,
                 "--out", str(pred / f"{held_id}_msk.nii.gz"))
            scores[name] = _score(pred, args.data, held_id, args.out / held_id / f"eval_{name}")
        rows.append({"case_id": held_id, **{f"{k}_{n}": v for n, s in scores.items() for k, v in s.items()}})
        print(rows[-1], flush=True)
    with open(args.out / "loo.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for key in rows[0]:
        if key != "case_id":
            print(f"mean {key}: {sum(r[key] for r in rows) / len(rows):.3f}")


if __name__ == "__main__":
    main()
