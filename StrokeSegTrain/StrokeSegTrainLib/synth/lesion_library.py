"""A compact library of real lesion masks in MNI space: cropped binary masks with their physical position.

The generator places these real infarct shapes into its brains (``real_lesions``). A library is built from a folder
of binary NIfTI masks in MNI space (one patient each, any grid), optionally with an arterial territory atlas on which
each mask's dominant territory is read, and saved as one ``.npz`` of plain arrays (bit-packed crops, offsets,
geometry, territory, volume), loadable without pickle. The bundled library is derived from the SOOP masks
(``data/``; BSD 2-Clause notice beside it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

#: Territory codes (the side is dropped: lesions are mirrored at random anyway).
TERRITORY_NAMES = ("unknown", "ACA", "MCA", "PCA", "vertebrobasilar")
#: ArterialAtlas136 group number (1..8: ACA L/R, MCA L/R, PCA L/R, vertebrobasilar L/R) -> territory code.
_ATLAS_GROUP_TO_TERRITORY = {1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3, 7: 4, 8: 4}

BUNDLED_LIBRARY = Path(__file__).with_name("data") / "soop_lesions_mni.npz"
MASK_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


@dataclass(frozen=True)
class LesionLibrary:
    """Cropped masks: crop ``i`` has ``shapes[i]`` voxels (z, y, x) whose voxel (0, 0, 0) lies at ``origins[i]``
    (LPS mm) on a grid of ``spacings[i]`` and ``directions[i]`` (row-major 3x3), bits in
    ``bits[offsets[i]:offsets[i+1]]``."""

    bits: np.ndarray
    offsets: np.ndarray
    shapes: np.ndarray
    origins: np.ndarray
    spacings: np.ndarray
    directions: np.ndarray
    territory: np.ndarray
    volume_ml: np.ndarray
    names: np.ndarray

    def __len__(self) -> int:
        return int(self.shapes.shape[0])

    def mask(self, i: int) -> np.ndarray:
        """Crop ``i`` as a uint8 {0, 1} array (z, y, x)."""
        shape = tuple(int(v) for v in self.shapes[i])
        packed = self.bits[int(self.offsets[i]):int(self.offsets[i + 1])]
        return np.unpackbits(packed, count=int(np.prod(shape))).reshape(shape)

    def physical_to_index(self, i: int, points: np.ndarray) -> np.ndarray:
        """LPS points (..., 3) to continuous (x, y, z) indices of crop ``i``."""
        d = self.directions[i].reshape(3, 3)
        return ((np.asarray(points, np.float64) - self.origins[i]) @ d) / self.spacings[i]

    def physical_box(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper LPS corners of crop ``i``'s voxel centres."""
        n = self.shapes[i][::-1].astype(float) - 1.0
        cube = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float) * n
        pts = self.origins[i] + (cube * self.spacings[i]) @ self.directions[i].reshape(3, 3).T
        return pts.min(axis=0), pts.max(axis=0)

    def with_territory(self, code: int) -> np.ndarray:
        """Indices of the crops whose dominant territory is ``code``."""
        return np.nonzero(self.territory == code)[0]

    def save(self, path: str | Path) -> Path:
        """Write as a compressed ``.npz`` of plain arrays (temporary name, then renamed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        try:
            np.savez_compressed(tmp, **{k: getattr(self, k) for k in self.__dataclass_fields__})
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path


def load_library(path: str | Path) -> LesionLibrary:
    """Read a library file (no pickle: object arrays are refused)."""
    with np.load(Path(path), allow_pickle=False) as data:
        return LesionLibrary(**{k: data[k] for k in LesionLibrary.__dataclass_fields__})




def _mask_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(MASK_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"{folder}: no lesion masks ({', '.join(MASK_SUFFIXES)}) found")
    return files


def _dominant_territory(image: sitk.Image, crop_origin_index: np.ndarray, crop: np.ndarray,
                        atlas: sitk.Image | None, groups: dict[int, int]) -> int:
    """The territory holding most of the lesion's voxels, read on ``atlas`` at the voxels' physical positions."""
    if atlas is None:
        return 0
    idx = np.argwhere(crop > 0)[:, ::-1] + crop_origin_index  # (x, y, z) in the mask's grid
    pts = np.array([image.TransformIndexToPhysicalPoint([int(v) for v in p]) for p in idx[:: max(1, len(idx) // 400)]])
    labels = []
    size = np.array(atlas.GetSize())
    arr = sitk.GetArrayViewFromImage(atlas)
    for p in pts:
        a = np.round(atlas.TransformPhysicalPointToContinuousIndex(p.tolist())).astype(int)
        if np.all(a >= 0) and np.all(a < size):
            labels.append(int(arr[a[2], a[1], a[0]]))
    territories = [_ATLAS_GROUP_TO_TERRITORY.get(groups.get(v, 0), 0) for v in labels if v > 0]
    if not territories:
        return 0
    return int(np.bincount(territories, minlength=len(TERRITORY_NAMES)).argmax())


def _read_atlas_groups(txt: Path) -> dict[int, int]:
    """ArterialAtlas136 label -> group number, from the ``.txt`` beside the atlas."""
    groups = {}
    for line in txt.read_text().splitlines():
        parts = line.split("|")
        if len(parts) >= 4 and parts[0].strip().isdigit():
            groups[int(parts[0])] = int(parts[3])
    return groups


def build_library(folder: str | Path, atlas: str | Path | None = None) -> LesionLibrary:
    """Crop every binary mask in ``folder`` to its bounding box and pack it; empty masks are skipped.

    ``atlas`` is an arterial territory atlas in the same space with a ``.txt`` beside it (``label|short|name|group``,
    as ArterialAtlas136); without it every territory is 0 (unknown).
    """
    folder = Path(folder)
    atlas_image, groups = None, {}
    if atlas is not None:
        atlas = Path(atlas)
        atlas_image = sitk.ReadImage(str(atlas), sitk.sitkUInt16)
        groups = _read_atlas_groups(atlas.with_name(atlas.name.split(".")[0] + ".txt"))
    chunks, offsets, shapes, origins, spacings, directions = [], [0], [], [], [], []
    territory, volumes, names = [], [], []
    for path in _mask_files(folder):
        image = sitk.ReadImage(str(path))
        if image.GetDimension() != 3:
            raise ValueError(f"{path}: a lesion mask must be 3-D, not {image.GetDimension()}-D")
        arr = sitk.GetArrayViewFromImage(image) > 0
        nz = np.argwhere(arr)
        if nz.size == 0:
            continue
        lo, hi = nz.min(axis=0), nz.max(axis=0) + 1
        crop = np.ascontiguousarray(arr[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.uint8)
        packed = np.packbits(crop.ravel())
        chunks.append(packed)
        offsets.append(offsets[-1] + packed.size)
        shapes.append(crop.shape)
        origins.append(image.TransformIndexToPhysicalPoint([int(lo[2]), int(lo[1]), int(lo[0])]))
        spacings.append(image.GetSpacing())
        directions.append(image.GetDirection())
        territory.append(_dominant_territory(image, lo[::-1], crop, atlas_image, groups))
        volumes.append(float(crop.sum()) * float(np.prod(image.GetSpacing())) / 1000.0)
        names.append(path.name.split(".")[0])
    if not names:
        raise ValueError(f"{folder}: every lesion mask is empty")
    return LesionLibrary(
        bits=np.concatenate(chunks), offsets=np.asarray(offsets, np.int64), shapes=np.asarray(shapes, np.int32),
        origins=np.asarray(origins, np.float64), spacings=np.asarray(spacings, np.float64),
        directions=np.asarray(directions, np.float64), territory=np.asarray(territory, np.int8),
        volume_ml=np.asarray(volumes, np.float32), names=np.asarray(names, dtype="U64"))


def resolve_library(source: str | Path | None) -> LesionLibrary:
    """The bundled library (``None``), a library ``.npz``, or a folder of a user's own MNI-space masks; read (or
    built) once per process, since the generator places a lesion from it in every case."""
    return _library_at(str(BUNDLED_LIBRARY if source is None else source))


@lru_cache(maxsize=4)
def _library_at(source: str) -> LesionLibrary:
    path = Path(source)
    return build_library(path) if path.is_dir() else load_library(path)
