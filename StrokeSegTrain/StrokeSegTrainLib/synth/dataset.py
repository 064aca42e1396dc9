"""Write synthetic cases as an ISLES 2022 (Zenodo) tree plus ``synth_manifest.json``.

Layout, exactly as the real release, so that training reads both the same way::

    DIR/sub-synth0001/ses-0001/dwi/sub-synth0001_ses-0001_dwi.nii.gz
    DIR/sub-synth0001/ses-0001/dwi/sub-synth0001_ses-0001_adc.nii.gz
    DIR/derivatives/sub-synth0001/ses-0001/sub-synth0001_ses-0001_msk.nii.gz
    DIR/synth_manifest.json

Files are written under a temporary name and renamed, so an interrupted run never leaves a half-written image.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import SimpleITK as sitk

from .generator import SynthCase, SynthConfig, case_id, generate_case

MANIFEST_NAME = "synth_manifest.json"
MANIFEST_FORMAT = 1


def case_paths(root: str | Path, cid: str) -> dict[str, Path]:
    """Zenodo-layout paths of one case's DWI, ADC and mask."""
    root = Path(root)
    dwi_dir = root / cid / "ses-0001" / "dwi"
    return {"dwi": dwi_dir / f"{cid}_ses-0001_dwi.nii.gz", "adc": dwi_dir / f"{cid}_ses-0001_adc.nii.gz",
            "mask": root / "derivatives" / cid / "ses-0001" / f"{cid}_ses-0001_msk.nii.gz"}


def _write_image(image: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name[:-7]}.{os.getpid()}.tmp.nii.gz")
    try:
        sitk.WriteImage(image, str(tmp), useCompression=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_case(case: SynthCase, root: str | Path) -> dict:
    """Write one case's three images; returns its manifest entry with the files relative to ``root``."""
    paths = case_paths(root, case.case_id)
    for key, image in (("dwi", case.dwi), ("adc", case.adc), ("mask", case.mask)):
        _write_image(image, paths[key])
    info = dict(case.info)
    info["files"] = {k: p.relative_to(Path(root)).as_posix() for k, p in paths.items()}
    return info


def _generate_and_write(job: tuple[int, int, SynthConfig, str]) -> dict:
    seed, index, config, root = job
    return write_case(generate_case(seed, index, config), root)


def iter_write(root: str | Path, cases: int, seed: int, workers: int = 1,
               config: SynthConfig | None = None) -> Iterator[dict]:
    """Generate and write cases 0..cases-1 (in order of index), ``workers`` processes at a time."""
    config = config or SynthConfig()
    jobs = [(int(seed), i, config, str(root)) for i in range(int(cases))]
    if workers <= 1:
        for job in jobs:
            yield _generate_and_write(job)
        return
    with ProcessPoolExecutor(max_workers=int(workers)) as pool:
        yield from pool.map(_generate_and_write, jobs, chunksize=1)


def write_dataset(root: str | Path, cases: int, seed: int, workers: int = 1, config: SynthConfig | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Path:
    """Write a whole synthetic data set and its manifest; returns the manifest path."""
    config = config or SynthConfig()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for done, entry in enumerate(iter_write(root, cases, seed, workers, config), start=1):
        entries.append(entry)
        if progress is not None:
            progress(done, int(cases))
    manifest = {"format": MANIFEST_FORMAT, "generator": "StrokeSegTrainLib.synth", "seed": int(seed),
                "layout": "ISLES-2022 Zenodo", "adc_units_note": "stored ADC x adc_units = mm^2/s",
                "config": asdict(config), "cases": entries}
    path = root / MANIFEST_NAME
    tmp = path.with_name(f".{MANIFEST_NAME}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)
    return path


def read_manifest(root: str | Path) -> dict:
    """The manifest of a synthetic tree, keyed as written (``cases`` in index order)."""
    return json.loads((Path(root) / MANIFEST_NAME).read_text())


__all__ = ["MANIFEST_NAME", "case_id", "case_paths", "read_manifest", "write_case", "write_dataset", "iter_write"]
