"""Atomic file writing: a reader (another process, a resumed batch run) never sees a half-written file.

Every writer in StrokeSeg writes to a temporary file in the destination folder and renames it into place with
``os.replace``, which is atomic on one file system. The temporary name keeps the real suffix (``.nii.gz``, ``.json``)
because SimpleITK chooses its writer from the file name.
"""
from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Read once: the process umask, so that renamed files get the permissions of an ordinarily created file even when the
# writer (safetensors, for one) created its temporary file private (0600).
_UMASK = os.umask(0o022)
os.umask(_UMASK)

# Multi-part suffixes that must stay together so that format detection by name still works.
_COMPOUND_SUFFIXES = (".nii.gz", ".tar.gz", ".json.gz", ".csv.gz", ".nrrd.gz")


def full_suffix(path: str | Path) -> str:
    """The file's format suffix, keeping known compound ones (``.nii.gz``) whole."""
    name = Path(path).name.lower()
    for suffix in _COMPOUND_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return Path(path).name[-len(suffix):]
    return Path(path).suffix


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on failure delete it.

    The parent folder is created when missing. The temporary name is ``.<stem>.tmp-XXXXXXXX<suffix>`` so it is hidden,
    unique, and keeps the suffix that format detection relies on.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = full_suffix(target)
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    tmp = target.parent / f".{stem}.tmp-{secrets.token_hex(4)}{suffix}"
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: the writer did not create the temporary file for {target}")
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass  # nothing to remove, or cannot: the original error is the one to report
        raise


def check_writable(path: str | Path, what: str = "output") -> Path:
    """Make sure a file can be written at ``path`` before any long computation: its folder is created if missing and
    a probe file is written and removed there. Raises :class:`InputFileError` naming the path otherwise."""
    from .errors import InputFileError

    target = Path(path)
    if target.is_dir():
        raise InputFileError(f"the {what} path is a folder; give a file name.", target)
    blocking = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise InputFileError(f"the {what} cannot be written: {blocking} is a file, not a folder.", target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = target.parent / f".{target.name}.probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputFileError(f"the {what} cannot be written here ({exc.strerror or exc}); choose another place.",
                             target) from exc
    return target


def check_writable_folder(folder: str | Path, what: str = "output folder") -> Path:
    """:func:`check_writable` for a folder that will receive several files (created if missing)."""
    from .errors import InputFileError

    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise InputFileError(f"the {what} is a file, not a folder.", target)
    check_writable(target / ".strokeseg-write-test", what)
    return target


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding, newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(path)


def write_json_atomic(path: str | Path, obj: Any, indent: int = 2, allow_nan: bool = True) -> Path:
    """Serialise ``obj`` as JSON and write it atomically.

    Serialisation happens before the disk is touched, so an unserialisable object leaves no file. ``allow_nan=False``
    refuses NaN/inf (strict JSON); the default keeps Python's behaviour because metrics such as Dice can be NaN.
    """
    text = json.dumps(obj, indent=indent, allow_nan=allow_nan) + "\n"
    return write_text_atomic(path, text)


def write_csv_atomic(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a header and rows as CSV (``\n`` line ends) atomically; every table StrokeSeg writes goes through here.

    Like :func:`write_json_atomic`, the text is built before the disk is touched."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())
