"""The batch table as the union of per-case rows, so that runs sharing an output folder never lose a row.

Every finished case writes one row file, ``<out>/.strokeseg-batch/rows/<case_id>.json``, atomically. ``volumes.csv``,
the folder's one table, is rebuilt from all row files in the folder, under an exclusive ``flock`` on
``<state>/table.lock`` so that concurrent rebuilds happen one after another: the last one sees every row written
before it. Shards of an array job (``--shard``), parallel runs and resumed runs all add to the same union; a folder's
table can be rebuilt at any time with :func:`merge_tables` (``strokeseg batch --merge DIR``), which also covers file
systems whose ``flock`` is local to one node.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from ..common.atomic import write_csv_atomic, write_json_atomic
from ..common.errors import InputFileError

STATE_DIR = ".strokeseg-batch"
VOLUME_COLUMNS = ("case_id", "status", "lesion_volume_ml", "lesion_count", "seconds", "error")
LEGACY_REPORT = "batch_report.json"


@dataclass
class CaseOutcome:
    """What happened to one case: "ok", "skipped" (resume: a readable mask was already there) or "failed"."""

    case_id: str
    status: str
    lesion_volume_ml: float | None = None
    lesion_count: int | None = None
    seconds: float | None = None
    error: str = ""
    run_id: str = ""  # the run that wrote the row (host-pid-token), so that parallel runs leave each other's cases


def state_dir(out_dir: Path) -> Path:
    """Claims, rows and the table lock of the batch runs writing into ``out_dir``."""
    return Path(out_dir) / STATE_DIR


def row_path(out_dir: Path, case_id: str) -> Path:
    return state_dir(out_dir) / "rows" / f"{case_id}.json"


def write_row(out_dir: Path, outcome: CaseOutcome) -> Path:
    """Record ``outcome`` as the case's row (replacing an earlier run's)."""
    return write_json_atomic(row_path(out_dir, outcome.case_id), asdict(outcome))


def read_row(out_dir: Path, case_id: str) -> CaseOutcome | None:
    """The case's row, or None when there is none (or it cannot be read: the case then runs again)."""
    try:
        return CaseOutcome(**json.loads(row_path(out_dir, case_id).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def read_rows(out_dir: Path) -> list[CaseOutcome]:
    """Every case's row in ``out_dir``, sorted by case id; an unreadable row file is an error naming it."""
    rows = []
    for path in sorted((state_dir(out_dir) / "rows").glob("*.json")):
        try:
            rows.append(CaseOutcome(**json.loads(path.read_text(encoding="utf-8"))))
        except (ValueError, TypeError) as error:
            raise InputFileError(f"unreadable batch row ({error}); delete it and run the case again.", path) from None
    return sorted(rows, key=lambda row: row.case_id)


@contextmanager
def _table_lock(out_dir: Path) -> Iterator[None]:
    """An exclusive lock between processes (``flock``; ``msvcrt.locking`` on Windows)."""
    lock = state_dir(out_dir) / "table.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as handle:
        if sys.platform == "win32":
            import msvcrt

            handle.seek(0)
            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)  # itself retries for 10 s
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def merge_tables(out_dir: str | Path, require_rows: bool = True) -> list[CaseOutcome]:
    """Rebuild ``volumes.csv`` in ``out_dir`` from all its rows; returns the rows.

    ``require_rows``: a folder without a rows folder is an error (``--merge`` on the wrong folder); a run that
    stops before its first row passes False and gets tables with no rows."""
    out = Path(out_dir)
    if require_rows and not (state_dir(out) / "rows").is_dir():
        raise InputFileError(f"no batch rows here (no {STATE_DIR}/rows folder): not a `strokeseg batch` output.", out)
    with _table_lock(out):
        rows = read_rows(out)
        write_csv_atomic(out / "volumes.csv", VOLUME_COLUMNS, volume_rows(rows))
        (out / LEGACY_REPORT).unlink(missing_ok=True)  # the same rows again, written by older versions: would go stale
    return rows


def volume_rows(rows: list[CaseOutcome]) -> Iterator[list]:
    """One line per case: volume (mL, 4 decimals), lesion count, seconds, and the reason for a failure."""
    for o in rows:
        yield [
            o.case_id,
            o.status,
            "" if o.lesion_volume_ml is None else f"{o.lesion_volume_ml:.4f}",
            "" if o.lesion_count is None else o.lesion_count,
            "" if o.seconds is None else f"{o.seconds:.2f}",
            o.error,
        ]
