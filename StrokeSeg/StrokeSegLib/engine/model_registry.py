"""Where models live and how a name becomes a file.

Two folders: models bundled with StrokeSeg (``StrokeSegLib/models/``, read-only for users) and a per-user cache
(``$STROKESEG_HOME/models`` or ``~/.cache/strokeseg/models``) where imported models go. Each model is
``<model_id>.safetensors`` with a sidecar ``<model_id>.sha256``, so a file damaged or swapped after installation is
noticed by :func:`verify_models` instead of silently producing different segmentations. A bundled id always means the
bundled file: importing a model under a bundled id is refused (rename it), a cache file with a bundled id is ignored
when resolving names, and :func:`verify_models` reports it as shadowing.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..common.atomic import atomic_path, write_text_atomic
from ..common.errors import ModelFileError, StrokeSegError
from .model_file import MODEL_SUFFIX, ModelMetadata, file_sha256, load_model, read_metadata

DEFAULT_MODEL_ID = "strokeseg-starter"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "models"
CHECKSUM_SUFFIX = ".sha256"
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

Source = Literal["bundled", "cache"]


@dataclass
class ModelEntry:
    """An installed model. ``metadata`` is None when the file's header cannot be read (then ``sha256_ok`` tells
    whether the bytes are at least the ones installed)."""

    model_id: str
    path: Path
    source: Source
    sha256_ok: bool
    metadata: ModelMetadata | None


def cache_dir() -> Path:
    """The per-user models folder (read from the environment on every call, so tests and users can redirect it)."""
    home = os.environ.get("STROKESEG_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "strokeseg"
    return base / "models"


def bundled_dir() -> Path:
    """The models folder shipped with StrokeSeg."""
    return BUNDLED_DIR


def _search_dirs() -> list[tuple[Source, Path]]:
    return [("cache", cache_dir()), ("bundled", bundled_dir())]


def _is_bundled_id(model_id: str) -> bool:
    return (bundled_dir() / f"{model_id}{MODEL_SUFFIX}").is_file()


def checksum_path(model_path: Path) -> Path:
    """The sidecar of ``<id>.safetensors``: ``<id>.sha256``."""
    return model_path.with_suffix(CHECKSUM_SUFFIX)


def _read_checksum(model_path: Path) -> str | None:
    sidecar = checksum_path(model_path)
    try:
        text = sidecar.read_text(encoding="utf-8").split()
    except OSError:
        return None
    return text[0].lower() if text else None


def _entry(path: Path, source: Source) -> ModelEntry:
    expected = _read_checksum(path)
    sha_ok = expected is not None and expected == file_sha256(path)
    try:
        metadata: ModelMetadata | None = read_metadata(path)
    except ModelFileError:
        metadata = None
    return ModelEntry(model_id=path.name[: -len(MODEL_SUFFIX)], path=path, source=source, sha256_ok=sha_ok,
                      metadata=metadata)


def list_models() -> list[ModelEntry]:
    """Every installed model file, cache first then bundled, each sorted by id (an id may appear in both)."""
    entries: list[ModelEntry] = []
    for source, folder in _search_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob(f"*{MODEL_SUFFIX}")):
                if path.is_file() and not path.name.startswith("."):
                    entries.append(_entry(path, source))
    return entries


def verify_models() -> list[tuple[ModelEntry, bool, str]]:
    """Check every installed model: checksum sidecar present and matching, file id = metadata id, weights load."""
    results = []
    for entry in list_models():
        ok, message = _verify(entry)
        results.append((entry, ok, message))
    return results


def _verify(entry: ModelEntry) -> tuple[bool, str]:
    if entry.source == "cache" and _is_bundled_id(entry.model_id):
        return False, (f"shadows the bundled model '{entry.model_id}' (an imported file under a bundled id); it is "
                       "ignored; delete it and import the model under another model_id")
    if entry.source == "cache" and entry.metadata is not None and _is_bundled_id(entry.metadata.model_id):
        return False, f"its metadata claims the bundled id '{entry.metadata.model_id}'; import it under its own id"
    expected = _read_checksum(entry.path)
    if expected is None:
        return False, f"no checksum file {checksum_path(entry.path).name}"
    if not entry.sha256_ok:
        return False, "checksum mismatch: the file changed or is damaged since it was installed"
    try:
        loaded = load_model(entry.path)
    except ModelFileError as exc:
        return False, str(exc)
    if loaded.metadata.model_id != entry.model_id:
        return False, f"file name says '{entry.model_id}' but the metadata says '{loaded.metadata.model_id}'"
    return True, "ok"


def check_model_id(model_id: str, path: Path) -> None:
    """Refuse (naming ``path``) an id that cannot be a file name in the models folder."""
    if not _MODEL_ID.match(model_id):
        raise ModelFileError(
            f"model_id {model_id!r} cannot be used as a file name (letters, digits, '.', '_', '-' only)", path
        )


def import_model(path: str | Path, replace: bool = False) -> ModelEntry:
    """Validate ``path`` (it must load), copy it atomically into the cache as ``<model_id>.safetensors`` and write its
    checksum. Importing the identical file again is a no-op; a different file under an installed id needs
    ``replace=True``."""
    source = Path(path)
    loaded = load_model(source)
    model_id = loaded.metadata.model_id
    check_model_id(model_id, source)
    if _is_bundled_id(model_id):
        raise StrokeSegError(
            f"model_id '{model_id}' is the id of a model bundled with StrokeSeg; an imported model may not replace it "
            "(every plain run would silently use it). Give the model its own model_id (e.g. retrain or re-export it "
            "with another id), then import it.",
            source,
        )
    target = cache_dir() / f"{model_id}{MODEL_SUFFIX}"
    if target.exists() and source.resolve() != target.resolve():
        installed = file_sha256(target)
        if installed != loaded.sha256 and not replace:
            raise StrokeSegError(
                f"a different model with id '{model_id}' is already installed at {target}; "
                "import with replace to overwrite it",
                source,
            )
    if not (target.exists() and source.resolve() == target.resolve()):
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        copied = file_sha256(target)
        if copied != loaded.sha256:
            target.unlink(missing_ok=True)
            raise ModelFileError("the file changed while it was being imported; try again", source)
    write_text_atomic(checksum_path(target), f"{loaded.sha256}  {target.name}\n")
    return ModelEntry(model_id=model_id, path=target, source="cache", sha256_ok=True, metadata=loaded.metadata)


def remove_model(model_id: str) -> Path:
    """Delete an imported model (and its checksum) from the cache; bundled models cannot be removed."""
    target = cache_dir() / f"{model_id}{MODEL_SUFFIX}"
    if not target.is_file():
        raise StrokeSegError(f"no imported model '{model_id}' in {cache_dir()}")
    target.unlink()
    checksum_path(target).unlink(missing_ok=True)
    return target


def _looks_like_path(text: str) -> bool:
    return text.endswith(MODEL_SUFFIX) or "/" in text or "\\" in text or text.startswith(".") or text.startswith("~")


def find_model(model_id: str) -> Path | None:
    """The installed file for ``model_id`` (bundled first, so a bundled id is never shadowed; then the cache), or
    None."""
    for _, folder in reversed(_search_dirs()):
        candidate = folder / f"{model_id}{MODEL_SUFFIX}"
        if candidate.is_file():
            return candidate
    return None


def resolve_model(name_or_path: str | Path | None = None) -> Path:
    """Turn what the user typed into a model file: None → the default model, a path → that file, an id → the
    installed file (bundled, then cache). Raises a :class:`StrokeSegError` that says how to get a model."""
    if name_or_path is None:
        found = find_model(DEFAULT_MODEL_ID)
        if found is None:
            raise StrokeSegError(
                f"No StrokeSeg model is installed (looked for '{DEFAULT_MODEL_ID}' in {cache_dir()} and "
                f"{bundled_dir()}). Import a model file with `strokeseg models import FILE.safetensors`, or train "
                "one with `strokeseg-train`, then pass it with --model."
            )
        return found
    if isinstance(name_or_path, Path) or _looks_like_path(str(name_or_path)) or Path(name_or_path).is_file():
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ModelFileError("model file not found", path)
        return path
    name = str(name_or_path)
    found = find_model(name)
    if found is None:
        installed = sorted({e.model_id for e in list_models()})
        listing = ", ".join(installed) if installed else "none"
        raise StrokeSegError(
            f"Unknown model '{name}': not a file and not an installed model id (installed: {listing}). "
            "Import it with `strokeseg models import FILE.safetensors` or pass the file path."
        )
    return found
