"""Per-epoch training history, saved as CSV, JSON and PNG curves after every epoch.

The history is also stored in every checkpoint, so a resumed run continues the same table rather than starting a new
one, and a run killed at any point leaves readable curves of everything done so far.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from StrokeSegLib.common.atomic import atomic_path, write_csv_atomic, write_json_atomic

# Columns whose values depend on wall-clock time, not on the computation: excluded when comparing two runs.
TIMING_COLUMNS = ("epoch_seconds", "patches_per_second")


class History:
    """An ordered list of per-epoch rows (dicts of plain values)."""

    def __init__(self, rows: list[dict[str, Any]] | None = None) -> None:
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows or []]

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))

    def __len__(self) -> int:
        return len(self.rows)

    def columns(self) -> list[str]:
        """Union of all keys, in first-seen order (validation columns appear only on validated epochs)."""
        seen: dict[str, None] = {}
        for row in self.rows:
            for key in row:
                seen.setdefault(key, None)
        return list(seen)

    def best(self, key: str = "val_dice") -> dict[str, Any] | None:
        """Row with the highest finite ``key`` (earliest on ties), or None when no row has it."""
        candidates = [r for r in self.rows if _finite(r.get(key))]
        return max(candidates, key=lambda r: r[key]) if candidates else None

    def without_timing(self) -> list[dict[str, Any]]:
        """Rows without wall-clock columns, for comparing an interrupted-and-resumed run with an uninterrupted one."""
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in self.rows]

    def save(self, folder: str | Path, plot: bool = True) -> None:
        """Write ``history.csv``, ``history.json`` and (when ``plot``) ``curves.png`` into ``folder``."""
        folder = Path(folder)
        write_json_atomic(folder / "history.json", self.rows)
        columns = self.columns()
        write_csv_atomic(folder / "history.csv", columns, ([r.get(c, "") for c in columns] for r in self.rows))
        if plot and self.rows:
            plot_curves(self.rows, folder / "curves.png")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["epoch"], r[key]) for r in rows if _finite(r.get(key))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _legend(ax, where: str) -> None:
    """A legend only when something was drawn (no validation yet: no legend, no warning)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc=where, fontsize="small")


def plot_curves(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Three panels: training/validation loss, validation Dice (with lesion F1), and learning rate (log scale)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 3.6), dpi=100)
    ax_loss, ax_dice, ax_lr = figure.subplots(1, 3)
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):
        x, y = _series(rows, key)
        if x:
            ax_loss.plot(x, y, marker=".", label=label)
    ax_loss.set(title="Loss", xlabel="epoch")
    _legend(ax_loss, "upper right")
    for key, label in (("val_dice", "Dice"), ("val_lesion_f1", "lesion F1")):
        x, y = _series(rows, key)
        if x:
            ax_dice.plot(x, y, marker=".", label=label)
    ax_dice.set(title="Validation (native space)", xlabel="epoch", ylim=(0, 1))
    _legend(ax_dice, "lower right")
    x, y = _series(rows, "lr")
    if x:
        ax_lr.plot(x, y, marker=".")
        if min(y) > 0:
            ax_lr.set_yscale("log")
    ax_lr.set(title="Learning rate", xlabel="epoch")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
