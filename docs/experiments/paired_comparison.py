"""Paired comparison of two models scored on the same generated test sets, with sets grouped (e.g. by anatomy).

Each evaluated folder is ``ROOT/<arm>_<set>/eval/metrics.csv`` (``strokeseg evaluate``). A group's mean is over its
cases; an arm's score is the mean of its group means (equal weight per group). The paired difference (B - A) per
case gets a stratified bootstrap 95 % interval (cases resampled within each group). Writes a markdown table and a
PNG of per-case Dice, A against B.

    python docs/experiments/paired_comparison.py --root EVAL --arms P T \
        --group procedural=T1,T3 --group template=TT1,TT3 --out OUT
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

METRICS = ("dice", "lesion_f1")


def read_metrics(folder: Path) -> dict[str, dict[str, float]]:
    """Per-case metrics of one evaluated folder, keyed by case id."""
    with (folder / "eval" / "metrics.csv").open() as f:
        return {row["case_id"]: {m: float(row[m]) for m in METRICS} for row in csv.DictReader(f)}


def paired_values(root: Path, arms: tuple[str, str], sets: list[str]) -> dict[str, np.ndarray]:
    """Arrays (cases, 2) per metric for the two arms over ``sets``; refuses sets whose cases differ."""
    out: dict[str, list] = {m: [] for m in METRICS}
    for s in sets:
        a, b = (read_metrics(root / f"{arm}_{s}") for arm in arms)
        if set(a) != set(b):
            raise SystemExit(f"set {s}: the two arms scored different cases")
        for case in sorted(a):
            for m in METRICS:
                out[m].append((a[case][m], b[case][m]))
    return {m: np.asarray(v, float) for m, v in out.items()}


def bootstrap_interval(groups: list[np.ndarray], n: int = 5000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of the equal-weight mean of per-group mean differences, resampling within groups."""
    rng = np.random.default_rng(seed)
    stats = np.zeros(n)
    for g in groups:
        idx = rng.integers(0, len(g), size=(n, len(g)))
        stats += g[idx].mean(axis=1)
    stats /= len(groups)
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True, help="folder holding <arm>_<set>/eval")
    ap.add_argument("--arms", nargs=2, required=True, metavar=("A", "B"))
    ap.add_argument("--group", action="append", required=True, help="NAME=SET1,SET2,...")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    groups = {g.split("=")[0]: g.split("=")[1].split(",") for g in args.group}
    a, b = args.arms
    values = {name: paired_values(args.root, (a, b), sets) for name, sets in groups.items()}
    lines = [f"| group (sets, cases) | {a} Dice | {b} Dice | {a} lesion F1 | {b} lesion F1 |", "| --- | --- | --- | --- | --- |"]
    for name, v in values.items():
        lines.append(f"| {name} ({'+'.join(groups[name])}, {len(v['dice'])}) | {v['dice'][:, 0].mean():.3f} | "
                     f"{v['dice'][:, 1].mean():.3f} | {v['lesion_f1'][:, 0].mean():.3f} | "
                     f"{v['lesion_f1'][:, 1].mean():.3f} |")
    score = {m: [float(np.mean([v[m][:, k].mean() for v in values.values()])) for k in (0, 1)] for m in METRICS}
    lines.append(f"| **score** (equal weight per group) | **{score['dice'][0]:.3f}** | **{score['dice'][1]:.3f}** | "
                 f"**{score['lesion_f1'][0]:.3f}** | **{score['lesion_f1'][1]:.3f}** |")
    lines.append("")
    for m in METRICS:
        diffs = [v[m][:, 1] - v[m][:, 0] for v in values.values()]
        lo, hi = bootstrap_interval(diffs)
        wins = sum(int((d > 0).sum()) for d in diffs)
        losses = sum(int((d < 0).sum()) for d in diffs)
        lines.append(f"- {m}: {b} - {a} = {score[m][1] - score[m][0]:+.3f} (stratified bootstrap 95 % interval "
                     f"{lo:+.3f} to {hi:+.3f}); {b} higher on {wins} cases, lower on {losses}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "paired_comparison.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    for ax, m in zip(axes, METRICS):
        for name, v in values.items():
            ax.scatter(v[m][:, 0], v[m][:, 1], s=14, alpha=0.7, label=name)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlabel(f"{a} {m}")
        ax.set_ylabel(f"{b} {m}")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"per case: {b} against {a}")
    fig.tight_layout()
    fig.savefig(args.out / "paired_comparison.png", dpi=110)


if __name__ == "__main__":
    main()
