"""The ``synth`` subcommand of ``strokeseg-train``: write a synthetic ISLES-layout data set.

    strokeseg-train synth --out DIR --cases N --seed S [--workers W] [--montage PNG]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``synth``."""
    p = subparsers.add_parser(
        "synth", help="generate synthetic acute-stroke DWI/ADC cases in the ISLES 2022 layout",
        description="Writes OUT/sub-synthNNNN/ses-0001/dwi/*_{dwi,adc}.nii.gz, OUT/derivatives/.../*_msk.nii.gz and "
                    "OUT/synth_manifest.json. Case i depends only on (seed, i).")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--cases", required=True, type=int, help="number of cases")
    p.add_argument("--seed", required=True, type=int, help="data-set seed")
    p.add_argument("--workers", type=int, default=1, help="processes generating in parallel (default 1)")
    p.add_argument("--p-stripped", type=float, default=None, help="share of skull-stripped cases (default 0.6)")
    p.add_argument("--p-no-lesion", type=float, default=None, help="share of lesion-free cases (default 0.1)")
    p.add_argument("--p-receive-coil", type=float, default=None,
                   help="share of cases whose receive-coil profile brightens the brain's periphery (default 0.5)")
    p.add_argument("--p-bright-cortex", type=float, default=None,
                   help="share of cases with patches of normal cortex that are bright on DWI (default 0.5)")
    p.add_argument("--p-eddy-misregistration", type=float, default=None,
                   help="share of cases whose b=0 image is shifted against the DWI by eddy currents, which biases "
                        "ADC at tissue edges (default 0.5)")
    p.add_argument("--p-symmetric-cortex", type=float, default=None,
                   help="share of cases with mirror-symmetric bright cortex whose ADC is mildly low, a normal look "
                        "that only symmetry tells from an infarct (default 0)")
    p.add_argument("--config", type=Path, default=None,
                   help="JSON object of generator settings (SynthConfig fields, e.g. p_real_lesions, "
                        "p_adc_other_grid); a --p-* flag given on the command line overrides it")
    p.add_argument("--lesions", type=Path, default=None,
                   help="real lesion masks to place: a folder of binary masks in MNI space (NIfTI, one patient "
                        "each) or a library .npz; default: the bundled library derived from SOOP")
    p.add_argument("--montage", type=Path, default=None, help="also save a PNG of the first (up to 6) cases")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(handler=run_synth)
    lib = subparsers.add_parser(
        "lesion-library", help="pack a folder of MNI-space lesion masks into a compact library for synth --lesions",
        description="Crops each binary mask to its bounding box, records its MNI position, volume and (with --atlas) "
                    "dominant arterial territory, and writes one .npz (no pickle).")
    lib.add_argument("--masks", required=True, type=Path, help="folder of binary lesion masks in MNI space")
    lib.add_argument("--atlas", type=Path, default=None,
                     help="arterial territory atlas on the same space, with its label .txt beside it "
                          "(ArterialAtlas136 format: label|short|name|group)")
    lib.add_argument("--out", required=True, type=Path, help="library file to write (.npz)")
    lib.set_defaults(handler=run_lesion_library)


def run_lesion_library(args: argparse.Namespace) -> int:
    """Build and save a lesion library; report its size."""
    from StrokeSegLib.errors import StrokeSegError

    from .lesion_library import build_library

    if not args.masks.is_dir():
        raise StrokeSegError("not a folder of lesion masks", path=args.masks)
    try:
        library = build_library(args.masks, args.atlas)
    except (OSError, ValueError, RuntimeError) as exc:
        raise StrokeSegError(f"cannot build a lesion library: {exc}", path=args.masks) from exc
    path = library.save(args.out)
    print(f"lesion-library: {len(library)} masks, {path.stat().st_size / 1e6:.1f} MB -> {path}", file=sys.stderr)
    return 0


def run_synth(args: argparse.Namespace) -> int:
    """Generate, write, and report the time per case."""
    from StrokeSegLib.errors import StrokeSegError

    from .dataset import write_dataset
    from .generator import SynthConfig, generate_case

    if args.cases < 1 or args.workers < 1:
        raise StrokeSegError("--cases and --workers must be at least 1")
    given = (("p_stripped", args.p_stripped), ("p_no_lesion", args.p_no_lesion),
             ("p_receive_coil", args.p_receive_coil), ("p_bright_cortex", args.p_bright_cortex),
             ("p_eddy_misregistration", args.p_eddy_misregistration),
             ("p_symmetric_cortex", args.p_symmetric_cortex))
    overrides = {k: v for k, v in given if v is not None}
    for name, value in overrides.items():
        if not 0.0 <= value <= 1.0:
            raise StrokeSegError(f"--{name.replace('_', '-')} must be between 0 and 1, not {value}")
    settings = read_synth_config(args.config) if args.config is not None else {}
    settings.update(overrides)
    if args.lesions is not None:
        if not args.lesions.exists():
            raise StrokeSegError("lesion masks not found", path=args.lesions)
        settings["lesion_library"] = str(args.lesions.resolve())
    config = SynthConfig(**settings)
    if config.p_real_lesions > 0.0:
        from .lesion_library import resolve_library

        try:
            resolve_library(config.lesion_library)
        except (OSError, ValueError) as exc:
            raise StrokeSegError(f"cannot read the lesion library: {exc}", path=config.lesion_library) from exc
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            rate = (time.perf_counter() - start) / done
            print(f"\rsynth: {done}/{total} cases ({rate:.1f} s/case)", end="" if done < total else "\n",
                  file=sys.stderr, flush=True)

    manifest = write_dataset(args.out, args.cases, args.seed, args.workers, config, progress)
    if args.montage is not None:
        from .montage import save_montage

        save_montage([generate_case(args.seed, i, config) for i in range(min(args.cases, 6))], args.montage)
    if not args.quiet:
        print(f"synth: wrote {args.cases} cases to {args.out} ({manifest.name})", file=sys.stderr)
    return 0


def read_synth_config(path: Path) -> dict:
    """Generator settings from a JSON object; unknown keys and shares outside [0, 1] are refused."""
    import json
    from dataclasses import fields

    from StrokeSegLib.errors import StrokeSegError

    from .generator import SynthConfig

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise StrokeSegError(f"cannot read the generator settings: {exc}", path=path) from exc
    if not isinstance(data, dict):
        raise StrokeSegError("generator settings must be a JSON object", path=path)
    known = {f.name for f in fields(SynthConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise StrokeSegError(f"unknown generator settings {unknown}; known: {sorted(known)}", path=path)
    for key, value in data.items():
        if key.startswith("p_") and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            raise StrokeSegError(f"{key} must be a number between 0 and 1, not {value!r}", path=path)
    if "volume_range_ml" in data:
        data["volume_range_ml"] = tuple(data["volume_range_ml"])
    return data
