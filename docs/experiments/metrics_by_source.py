"""Mean ISLES metrics of an evaluated generated tree, split by lesion source (real-library vs procedural).

    python docs/experiments/metrics_by_source.py --metrics E/metrics.csv --tree TREE [--out E/by_source.csv]

Reads ``strokeseg evaluate``'s ``metrics.csv`` and the tree's ``synth_manifest.json`` (its ``pattern`` is ``real`` for
library lesions, ``none`` for lesion-free cases, else a procedural pattern) and prints one row per source.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from StrokeSegTrainLib.synth.dataset import read_manifest

COLUMNS = ("dice", "lesion_f1", "avd_ml")


def by_source(metrics: Path, tree: Path) -> list[dict[str, object]]:
    """One row per source: case count and the mean of each metric (lesion-free cases listed on their own)."""
    source = {}
    for entry in read_manifest(tree)["cases"]:
        pattern = entry["pattern"]
        source[entry["case_id"]] = "real-library" if pattern == "real" else ("no lesion" if pattern == "none"
                                                                               else "procedural")
    with open(metrics, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["case_id"].split("_")[0] in source]
    out = []
    for name in ("real-library", "procedural", "no lesion", "all"):
        chosen = [r for r in rows if name == "all" or source[r["case_id"].split("_")[0]] == name]
        if chosen:
            means = {c: round(float(np.mean([float(r[c]) for r in chosen])), 3) for c in COLUMNS}
            out.append({"source": name, "cases": len(chosen), **means})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--tree", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = by_source(args.metrics, args.tree)
    for row in rows:
        print(row)
    if args.out is not None:
        with open(args.out, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
