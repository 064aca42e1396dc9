"""Random patch sampling with foreground oversampling, reproducible across resumes and across process counts.

Each epoch one generator, seeded identically on every process, draws a *plan*: for every patch of every process, the
case, whether it is a foreground patch, and a private seed that fixes its position; and for every batch a seed for its
augmentation. A process takes only its own slice of the plan (like ``DistributedSampler``), so N processes see N
disjoint streams and a resumed run replays exactly the same patches, because the only state is that one generator.

Foreground patches are centred on a random lesion voxel (shifted only as far as needed to stay inside the volume).
With ``foreground_sampling="lesion"`` the lesion is drawn first, uniformly among the case's 26-connected lesions, and
then a voxel in it: drawing voxels uniformly gives a 2-voxel embolus next to a 2,000-voxel infarct one patch in a
thousand, so the network rarely learns to detect the small lesions that lesion-wise F1 counts as much as big ones.
Background patches are centred on a random voxel of the brain's bounding box with no lesion forced into them, so the
network also sees lesion-free tissue. Volumes smaller than the patch are zero-padded (zero = background after the
z-score normalisation).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from StrokeSegLib.common.lesions import label_lesions

#: How a foreground patch picks its centre: any lesion voxel alike, or a lesion first (each alike), then its voxel.
FOREGROUND_SAMPLING = ("voxel", "lesion")


class PatchSource(Protocol):
    """What the sampler needs from a case (``data_cache.CachedCase`` provides it)."""

    image: np.ndarray        # (C, z, y, x), may be a read-only memory map
    mask: np.ndarray         # (z, y, x) uint8
    foreground: np.ndarray   # (K, 3) int voxel indices of the lesion
    brain_bbox: tuple[tuple[int, int, int], tuple[int, int, int]]  # inclusive start, exclusive stop


@dataclass(frozen=True)
class Draw:
    """One planned patch."""

    case: int
    foreground: bool
    seed: int


@dataclass(frozen=True)
class PlannedBatch:
    """One process's batch: its patches and the seed of its augmentation."""

    draws: tuple[Draw, ...]
    augment_seed: int


def crop_with_padding(array: np.ndarray, start: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """``array[..., start:start+size]`` over the last three axes, zero-filled where the window leaves the array."""
    lead = array.shape[:-3]
    out = np.zeros((*lead, *size), dtype=array.dtype)
    src, dst = [], []
    for s, n, dim in zip(start, size, array.shape[-3:]):
        lo, hi = max(s, 0), min(s + n, dim)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[(..., *dst)] = array[(..., *src)]  # type: ignore[index,arg-type]
    return out


def start_range(dim: int, size: int) -> tuple[int, int]:
    """Allowed patch starts along one axis: inside the volume, or (volume smaller than patch) covering all of it."""
    return (0, dim - size) if dim >= size else (dim - size, 0)


def patch_start(shape: Sequence[int], size: Sequence[int], centre: Sequence[int]) -> tuple[int, int, int]:
    """Start of the patch centred on ``centre``, moved just enough to respect :func:`start_range`."""
    starts = []
    for dim, n, c in zip(shape, size, centre):
        lo, hi = start_range(dim, n)
        starts.append(int(min(max(c - n // 2, lo), hi)))
    return tuple(starts)  # type: ignore[return-value]


def lesion_groups(mask: np.ndarray, foreground: np.ndarray) -> list[np.ndarray]:
    """Rows of ``foreground`` grouped by 26-connected lesion of ``mask`` (the connectivity of the ISLES metrics)."""
    if not len(foreground):
        return []
    labels, _ = label_lesions(np.asarray(mask) > 0)
    ids = labels[tuple(np.asarray(foreground).T)]
    order = np.argsort(ids, kind="stable")
    splits = np.flatnonzero(np.diff(ids[order])) + 1
    return [group for group in np.split(order, splits) if len(group)]


def extract_patch(case: PatchSource, draw: Draw, size: Sequence[int],
                  lesions: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image (C, *size) float32 and mask (1, *size) uint8 for one planned patch.

    ``lesions`` (from :func:`lesion_groups`) switches foreground patches to lesion-balanced centres.
    """
    rng = np.random.default_rng(draw.seed)
    shape = case.mask.shape
    if draw.foreground and len(case.foreground):
        if lesions:
            group = lesions[int(rng.integers(len(lesions)))]
            centre = case.foreground[group[rng.integers(len(group))]]
        else:
            centre = case.foreground[rng.integers(len(case.foreground))]
    else:
        lo, hi = case.brain_bbox
        centre = [rng.integers(a, max(b, a + 1)) for a, b in zip(lo, hi)]
    start = patch_start(shape, size, centre)
    image = crop_with_padding(case.image, start, size).astype(np.float32, copy=False)
    mask = crop_with_padding(case.mask, start, size)[None].astype(np.uint8, copy=False)
    return image, mask


class PatchSampler:
    """Plans and assembles training batches; ``state_dict``/``load_state_dict`` make it resumable."""

    def __init__(self, cases: Sequence[PatchSource], patch_size: Sequence[int], batch_size: int,
                 foreground_fraction: float = 0.33, seed: int = 0, rank: int = 0, world_size: int = 1,
                 foreground_sampling: str = "voxel") -> None:
        if not cases:
            raise ValueError("PatchSampler needs at least one case")
        if foreground_sampling not in FOREGROUND_SAMPLING:
            raise ValueError(f"foreground_sampling must be one of {FOREGROUND_SAMPLING}, got {foreground_sampling!r}")
        self.cases = list(cases)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size = int(batch_size)
        self.foreground_fraction = float(foreground_fraction)
        self.rank, self.world_size = int(rank), int(world_size)
        self._rng = np.random.default_rng(seed)
        self._lesions = ([lesion_groups(c.mask, c.foreground) for c in self.cases]
                         if foreground_sampling == "lesion" else [None] * len(self.cases))

    def plan_epoch(self, iterations: int) -> list[PlannedBatch]:
        """Draw the next epoch for all processes (advancing the shared generator) and return this process's batches."""
        total = iterations * self.world_size * self.batch_size
        case_index = self._rng.integers(len(self.cases), size=total)
        is_foreground = self._rng.random(total) < self.foreground_fraction
        patch_seeds = self._rng.integers(2**63, size=total, dtype=np.int64)
        augment_seeds = self._rng.integers(2**63, size=iterations * self.world_size, dtype=np.int64)
        batches = []
        for it in range(iterations):
            slot = it * self.world_size + self.rank
            first = slot * self.batch_size
            draws = tuple(Draw(int(case_index[k]), bool(is_foreground[k]), int(patch_seeds[k]))
                          for k in range(first, first + self.batch_size))
            batches.append(PlannedBatch(draws, int(augment_seeds[slot])))
        return batches

    def make_batch(self, batch: PlannedBatch) -> tuple[np.ndarray, np.ndarray]:
        """Stacked image (B, C, *patch) float32 and mask (B, 1, *patch) uint8."""
        pairs = [extract_patch(self.cases[d.case], d, self.patch_size, self._lesions[d.case]) for d in batch.draws]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def iterate(self, plan: Sequence[PlannedBatch], prefetch: int = 2,
                transform: Callable[[PlannedBatch, np.ndarray, np.ndarray], tuple[Any, Any]] | None = None
                ) -> Iterator[tuple[PlannedBatch, Any, Any]]:
        """Yield ``(planned, image, mask)`` in plan order, assembling up to ``prefetch`` batches ahead in threads.

        Reading memory-mapped patches and torch operations release the GIL, so threads hide batch making behind the
        training step without the pickling and start-up cost of worker processes. ``transform(planned, image,
        mask)``, when given, also runs in those threads (CPU training augments there; GPU training augments on the
        GPU instead).
        """
        def work(planned: PlannedBatch) -> tuple[Any, Any]:
            image, mask = self.make_batch(planned)
            return transform(planned, image, mask) if transform is not None else (image, mask)

        if prefetch <= 0:
            for planned in plan:
                yield (planned, *work(planned))
            return
        with ThreadPoolExecutor(max_workers=prefetch) as pool:
            pending: deque[tuple[PlannedBatch, Future]] = deque()
            for planned in plan:
                pending.append((planned, pool.submit(work, planned)))
                if len(pending) > prefetch:
                    done, future = pending.popleft()
                    yield (done, *future.result())
            while pending:
                done, future = pending.popleft()
                yield (done, *future.result())

    def state_dict(self) -> dict[str, Any]:
        """The generator state (plain dict of ints and strings; loads with ``torch.load(weights_only=True)``)."""
        return {"bit_generator": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where :meth:`state_dict` was taken."""
        self._rng.bit_generator.state = state["bit_generator"]
