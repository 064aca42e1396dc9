"""Preprocessing cache: every case goes through ``prepare_case`` once and is then memory-mapped from ``.npy`` files.

Preprocessing (reading NIfTI, aligning ADC, resampling, normalising) takes seconds per case, while a training step
needs a patch in milliseconds; so each case is prepared with exactly the deployment code path and stored on the
network grid. A case folder is named by a hash of everything its content depends on (preprocessing settings, cache
format, the source files' paths, sizes and modification times), so changing a setting or replacing a file builds a new
entry and removes the stale one. Entries are written to a temporary folder and renamed, so a killed run never leaves a
half-written entry that a later run would trust.

Stored per case: ``image.npy`` (C, z, y, x) float32 (or float16), ``mask.npy`` and ``brain.npy`` (z, y, x) uint8 on the
network grid, ``foreground.npy`` (K, 3) lesion voxel indices for the sampler, ``native_mask.npy`` and
``native_brain.npy`` on the DWI's own grid, and ``meta.json`` with both grids, for validation in native space.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from StrokeSegLib.common.atomic import write_json_atomic
from StrokeSegLib.common.geometry import Grid, resample_to_grid
from StrokeSegLib.common.progress import CancelToken, ProgressCallback, check_cancel, report
from StrokeSegLib.io.cases import Case
from StrokeSegLib.io.imageio import read_image, read_mask
from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig

#: Part of every cache key; raised whenever ``prepare_case`` puts voxels elsewhere (2: canonical network grid).
CACHE_FORMAT = 2
_ARRAYS = ("image", "mask", "brain", "foreground", "native_mask", "native_brain")


@dataclass
class CachedCase:
    """One prepared case, its arrays memory-mapped read-only."""

    case_id: str
    folder: Path
    image: np.ndarray
    mask: np.ndarray
    brain: np.ndarray
    foreground: np.ndarray
    native_mask: np.ndarray
    native_brain: np.ndarray
    network_grid: Grid
    native_grid: Grid
    brain_bbox: tuple[tuple[int, int, int], tuple[int, int, int]]

    def to_native(self, array: np.ndarray, interpolator: str = "linear") -> sitk.Image:
        """Map a (z, y, x) network-grid array onto the exact DWI grid (the inverse step of preprocessing)."""
        source = self.network_grid.image_from_array(np.ascontiguousarray(array, dtype=np.float32))
        return resample_to_grid(source, self.native_grid, interpolator=interpolator)

    def native_image(self, array: np.ndarray) -> sitk.Image:
        """Wrap a (z, y, x) native-grid array (e.g. the cached expert mask) as an image on the DWI grid."""
        return self.native_grid.image_from_array(np.ascontiguousarray(array))


def _file_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cache_key(case: Case, preprocess: PreprocessConfig, dtype: str) -> str:
    """Hex digest of everything a cache entry depends on."""
    if case.mask is None:
        raise ValueError(f"{case.case_id}: training cases need a mask")
    payload = {
        "format": CACHE_FORMAT,
        "preprocess": dataclasses.asdict(preprocess),
        "dtype": dtype,
        "files": [_file_identity(Path(p)) for p in (case.dwi, case.adc, case.mask)],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _brain_bbox(brain: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Inclusive start / exclusive stop of the brain mask's bounding box (the whole volume when it is empty)."""
    coords = np.argwhere(brain)
    if len(coords) == 0:
        return (0, 0, 0), tuple(int(s) for s in brain.shape)  # type: ignore[return-value]
    return tuple(int(v) for v in coords.min(0)), tuple(int(v) + 1 for v in coords.max(0))  # type: ignore[return-value]


def _prepare_arrays(case: Case, preprocess: PreprocessConfig, dtype: str) -> tuple[dict[str, np.ndarray], dict]:
    """Run the deployment preprocessing on one case; return its arrays and grids."""
    from StrokeSegLib.preprocessing.prepare import prepare_case

    dwi = read_image(case.dwi, role="DWI")
    adc = read_image(case.adc, role="ADC")
    prepared = prepare_case(dwi, adc, preprocess, dwi_path=case.dwi, adc_path=case.adc)
    assert case.mask is not None  # training cases have masks (load_training_cases)
    native_mask_image = read_mask(case.mask)
    native_grid = prepared.native_grid
    if Grid.of(native_mask_image) != native_grid:
        # Masks share the DWI grid in ISLES up to float32 rounding in the NIfTI header; put them on it exactly.
        native_mask_image = resample_to_grid(native_mask_image, native_grid, interpolator="nearest")
    # Linear interpolation then 0.5 keeps a small lesion's volume closer to the truth than nearest neighbour.
    network_mask = (np.asarray(prepared.to_network(native_mask_image, "linear")) >= 0.5).astype(np.uint8)
    brain = np.asarray(prepared.brain_mask, dtype=np.uint8)
    arrays = {
        "image": np.asarray(prepared.image, dtype=np.float32).astype(dtype),
        "mask": network_mask,
        "brain": brain,
        "foreground": np.argwhere(network_mask).astype(np.int32).reshape(-1, 3),
        "native_mask": sitk.GetArrayFromImage(native_mask_image).astype(np.uint8),
        "native_brain": sitk.GetArrayFromImage(prepared.native_brain_mask).astype(np.uint8),
    }
    meta = {
        "case_id": case.case_id,
        "format": CACHE_FORMAT,
        "network_grid": dataclasses.asdict(prepared.network_grid),
        "native_grid": dataclasses.asdict(native_grid),
        "brain_bbox": _brain_bbox(brain),
        "sources": {"dwi": str(case.dwi), "adc": str(case.adc), "mask": str(case.mask)},
        "preprocess": dataclasses.asdict(preprocess),
        "alignment": getattr(getattr(prepared, "alignment", None), "method", None),
    }
    return arrays, meta


def _safe_name(case_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in case_id)


def build_entry(case: Case, cache_root: str | Path, preprocess: PreprocessConfig, dtype: str = "float32") -> Path:
    """Make sure the entry for ``case`` exists (building it when needed) and return its folder."""
    case_folder = Path(cache_root) / _safe_name(case.case_id)
    key = cache_key(case, preprocess, dtype)
    entry = case_folder / key
    if (entry / "meta.json").is_file():
        return entry
    arrays, meta = _prepare_arrays(case, preprocess, dtype)
    case_folder.mkdir(parents=True, exist_ok=True)
    tmp = case_folder / f".{key}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array))
        write_json_atomic(tmp / "meta.json", {**meta, "key": key})
        try:
            os.replace(tmp, entry)
        except OSError:
            if not (entry / "meta.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another run (a fold on another GPU) finished it first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for stale in case_folder.iterdir():  # settings or source files changed: the old entries can never be used again
        if stale != entry and stale.is_dir() and not stale.name.startswith("."):  # never another run's temp folder
            shutil.rmtree(stale, ignore_errors=True)
    return entry


def open_entry(folder: str | Path) -> CachedCase:
    """Memory-map one cache entry."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
    lo, hi = meta["brain_bbox"]
    return CachedCase(case_id=meta["case_id"], folder=folder, network_grid=Grid(**meta["network_grid"]),
                      native_grid=Grid(**meta["native_grid"]), brain_bbox=(tuple(lo), tuple(hi)), **arrays)


def build_cache(cases: list[Case], cache_root: str | Path, preprocess: PreprocessConfig, dtype: str = "float32",
                progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                build: bool = True) -> list[CachedCase]:
    """Cached, memory-mapped versions of ``cases`` in the same order.

    With ``build=False`` (the non-zero ranks of a distributed run, after rank 0 has built everything) entries are only
    opened, never written.
    """
    opened = []
    for index, case in enumerate(cases):
        check_cancel(cancel)
        report(progress, "Preprocessing cases", index / max(len(cases), 1))
        if build:
            entry = build_entry(case, cache_root, preprocess, dtype)
        else:
            entry = Path(cache_root) / _safe_name(case.case_id) / cache_key(case, preprocess, dtype)
        opened.append(open_entry(entry))
    report(progress, "Preprocessing cases", 1.0)
    return opened
