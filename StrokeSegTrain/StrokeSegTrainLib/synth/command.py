"""The ``synth`` subcommand of ``strokeseg-train``: write a synthetic ISLES-layout data set.

    strokeseg-train synth --out DIR --cases N --seed S [--workers W] [--montage PNG]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .generator import SynthConfig


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
    add_share_flags(p)
    p.add_argument("--config", type=Path, default=None,
                   help="JSON object of generator settings (SynthConfig fields, e.g. p_real_lesions, "
                        "p_adc_other_grid); a --p-* flag given on the command line overrides it")
    p.add_argument("--lesions", type=Path, default=None,
                   help="real lesion masks to place: a folder of binary masks in MNI space (NIfTI, one patient "
                        "each) or a library .npz; default: the bundled library derived from SOOP")
    p.add_argument("--anatomy-template", type=Path, default=None,
                   help="folder holding the ICBM 2009a grey and white matter maps for --p-template-anatomy; default: "
                        "the copy inside the nilearn package")
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


def flag_name(share: str) -> str:
    """The command-line flag of a SynthConfig share: ``p_receive_coil`` -> ``--p-receive-coil``."""
    return "--" + share.replace("_", "-")


def add_share_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--p-*`` flag per SynthConfig share, with the field's help text and default."""
    from .generator import share_fields

    for f in share_fields():
        parser.add_argument(flag_name(f.name), dest=f.name, type=float, default=None, metavar="P",
                            help=f"{f.metadata['help']} (default {f.default})")


def share_overrides(args: argparse.Namespace) -> dict[str, float]:
    """The shares given as ``--p-*`` flags on the command line (flags left out are absent); outside [0, 1] refused."""
    from StrokeSegLib.common.errors import StrokeSegError

    from .generator import share_fields

    given = {f.name: getattr(args, f.name) for f in share_fields() if getattr(args, f.name) is not None}
    for name, value in given.items():
        if not 0.0 <= value <= 1.0:
            raise StrokeSegError(f"{flag_name(name)} must be between 0 and 1, not {value}")
    return given


def run_lesion_library(args: argparse.Namespace) -> int:
    """Build and save a lesion library; report its size."""
    from StrokeSegLib.common.errors import StrokeSegError

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
    from StrokeSegLib.common.errors import StrokeSegError

    from .dataset import write_dataset
    from .generator import generate_case

    if args.cases < 1 or args.workers < 1:
        raise StrokeSegError("--cases and --workers must be at least 1")
    config = build_synth_config(args.config, share_overrides(args), args.lesions, args.anatomy_template)
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


def build_synth_config(config_file: Path | None, overrides: dict, lesions: Path | None = None,
                       anatomy_template: Path | None = None) -> SynthConfig:
    """The generator settings of a run: the config file (if any), then ``overrides`` (already checked) over it, then
    the ``lesions`` and ``anatomy_template`` sources; a lesion library or template that would be used is read once
    here so a bad one fails up front."""
    from StrokeSegLib.common.errors import StrokeSegError

    from .generator import SynthConfig, share_fields

    settings = read_synth_config(config_file) if config_file is not None else {}
    settings.update(overrides)
    for f in share_fields():  # a JSON 0 and a flag's 0.0 must give the same manifest
        if f.name in settings:
            settings[f.name] = float(settings[f.name])
    if lesions is not None:
        if not lesions.exists():
            raise StrokeSegError("lesion masks not found", path=lesions)
        settings["lesion_library"] = str(lesions.resolve())
    if anatomy_template is not None:
        settings["anatomy_template"] = str(anatomy_template.resolve())
    config = SynthConfig(**settings)
    if config.p_template_anatomy > 0.0:
        from .template_anatomy import load_template

        try:
            load_template(config.anatomy_template)
        except (OSError, ValueError, RuntimeError) as exc:
            raise StrokeSegError(f"cannot read the template anatomy: {exc}", path=config.anatomy_template) from exc
    if config.p_real_lesions > 0.0:
        from .lesion_library import resolve_library

        try:
            resolve_library(config.lesion_library)
        except (OSError, ValueError) as exc:
            raise StrokeSegError(f"cannot read the lesion library: {exc}", path=config.lesion_library) from exc
    return config


def read_synth_config(path: Path) -> dict:
    """Generator settings from a JSON object; unknown keys and shares outside [0, 1] are refused."""
    import json

    from StrokeSegLib.common.errors import StrokeSegError

    from .generator import check_synth_settings

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise StrokeSegError(f"cannot read the generator settings: {exc}", path=path) from exc
    if not isinstance(data, dict):
        raise StrokeSegError("generator settings must be a JSON object", path=path)
    try:
        check_synth_settings(data)
    except ValueError as exc:
        raise StrokeSegError(str(exc), path=path) from None
    if "volume_range_ml" in data:
        data["volume_range_ml"] = tuple(data["volume_range_ml"])
    return data
