"""``strokeseg``: segment one case, a whole ISLES folder, evaluate predictions, manage models.

The same entry point runs from a shell, from ``python -m StrokeSegLib.cli`` and inside Slicer
(``Slicer --no-main-window --python-script StrokeSeg/Resources/Scripts/strokeseg_cli.py ...``).
Exit status: 0 success, 1 some cases failed, 2 bad input or usage, 130 cancelled.
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from .common.errors import CancelledError, StrokeSegError
from .common.progress import PROGRESS_PREFIX, CancelFile, progress_line  # noqa: F401  (PROGRESS_PREFIX re-exported)
from .engine.options import SegmentOptions

log = logging.getLogger("strokeseg")

#: Image formats the outputs can be written in.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


class TerminalProgress:
    """A tqdm bar per stage for people; ``machine=True`` prints parseable lines for the Slicer panel instead."""

    def __init__(self, machine: bool = False) -> None:
        self.machine = machine
        self.stage: str | None = None
        self.bar = None

    def __call__(self, stage: str, fraction: float) -> None:
        if self.machine:
            print(progress_line(stage, fraction), flush=True)
            return
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=100, desc=stage, unit="%", leave=False, file=sys.stderr)
        assert self.bar is not None
        self.bar.n = round(fraction * 100)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _add_inference_options(p: argparse.ArgumentParser) -> None:
    """``--model`` plus one argument per :class:`~StrokeSegLib.engine.options.SegmentOptions` field."""
    p.add_argument("--model", default=None,
                   help="model id, or a model file (.safetensors); default: the bundled starter model")
    SegmentOptions.add_arguments(p)


def _options(args: argparse.Namespace) -> SegmentOptions:
    return SegmentOptions.from_args(args)


def _check_image_output(path: str, what: str) -> None:
    """Before computing: the output name must be an image format we write, and its place writable."""
    from .common.atomic import check_writable, full_suffix

    if full_suffix(path).lower() not in IMAGE_SUFFIXES:
        raise StrokeSegError(f"{path}: the {what} must be an image file ending in {', '.join(IMAGE_SUFFIXES)}.")
    check_writable(path, what)


def cmd_segment(args: argparse.Namespace) -> int:
    from .common.atomic import check_writable
    from .engine.segmentation import segment_files

    _check_image_output(args.out, "output mask")
    if args.prob:
        _check_image_output(args.prob, "probability map")
    if args.report:
        check_writable(args.report, "report")
    progress = TerminalProgress(machine=args.progress == "machine")
    try:
        result = segment_files(
            args.dwi, args.adc, args.model, _options(args), args.out, args.prob, args.report, progress=progress,
            cancel=CancelFile(args.cancel_file),
        )
    finally:
        progress.close()
    rep = result.report
    print(
        f"{args.out}: lesion volume {rep['lesion_volume_ml']:.2f} mL in {rep['lesion_count']} lesion(s); "
        f"{rep['timings']['total_s']:.1f} s on {rep['device']} with model {rep['model_id']}"
    )
    return 0


def _shard(text: str) -> tuple[int, int]:
    from .apps.batch import parse_shard

    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def cmd_batch(args: argparse.Namespace) -> int:
    from .apps.batch import run_batch
    from .apps.batch_table import merge_tables
    from .common.atomic import check_writable_folder

    if args.merge is not None:
        if args.input_root is not None or args.out is not None:
            raise StrokeSegError("strokeseg batch --merge DIR takes no input root and no --out")
        rows = merge_tables(args.merge)
        failed = [r for r in rows if r.status == "failed"]
        print(f"{len(rows)} case(s), {len(failed)} failed; table: {Path(args.merge) / 'volumes.csv'}")
        for row in failed:
            print(f"FAILED {row.case_id}: {row.error}", file=sys.stderr)
        return 1 if failed else 0
    if args.input_root is None or args.out is None:
        raise StrokeSegError("strokeseg batch needs an input root and --out (or --merge DIR)")
    check_writable_folder(args.out)
    batch = run_batch(args.input_root, args.out, args.model, _options(args), resume=args.resume, shard=args.shard,
                      prefetch=args.prefetch)
    done = sum(o.status == "ok" for o in batch.outcomes)
    skipped = sum(o.status == "skipped" for o in batch.outcomes)
    print(f"{done} segmented, {skipped} skipped (already done), {len(batch.failed)} failed, "
          f"{len(batch.elsewhere)} left to other runs; table: {Path(args.out) / 'volumes.csv'}")
    for case_id, why in batch.elsewhere:
        print(f"ELSEWHERE {case_id}: {why}", file=sys.stderr)
    for o in batch.failed:
        print(f"FAILED {o.case_id}: {o.error}", file=sys.stderr)
    return 0 if batch.ok else 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .common.atomic import check_writable_folder
    from .evaluation.scoring import evaluate, format_summary

    check_writable_folder(args.out, "report folder")
    report = evaluate(args.pred, args.gt, args.out)
    print(format_summary(report))
    return 0 if report.ok else 1


def cmd_models(args: argparse.Namespace) -> int:
    from .engine import model_registry as registry

    if args.action == "ensemble":
        return _make_ensemble(args)
    if args.out is not None or args.name is not None:
        raise StrokeSegError(f"strokeseg models {args.action} takes no --out or --name (those are for ensemble)")
    if args.action == "import":
        if len(args.files) != 1:
            raise StrokeSegError("strokeseg models import needs exactly one model file")
        entry = registry.import_model(args.files[0], replace=args.replace)
        print(f"imported {entry.model_id} -> {entry.path}")
        return 0
    if args.action == "verify":
        bad = 0
        for entry, ok, message in registry.verify_models():
            bad += not ok
            print(f"{'OK ' if ok else 'BAD'} {entry.model_id} ({entry.source}) {entry.path}: {message}")
        return 1 if bad else 0
    entries = registry.list_models()
    if not entries:
        print("no models installed; import one with `strokeseg models import FILE` or train one with strokeseg-train")
    for entry in entries:
        meta = entry.metadata
        detail = "UNREADABLE HEADER" if meta is None else f"spacing={list(meta.target_spacing)}"
        if meta is not None and meta.members:
            detail += f"\tensemble of {len(meta.members)}"
        print(f"{entry.model_id}\t{entry.source}\t{'checksum ok' if entry.sha256_ok else 'CHECKSUM MISMATCH'}\t"
              f"{detail}\t{entry.path}")
    return 0


def _make_ensemble(args: argparse.Namespace) -> int:
    from .engine.ensemble import build_ensemble

    if not args.files or args.out is None or args.name is None:
        raise StrokeSegError("usage: strokeseg models ensemble MEMBER [MEMBER ...] --out FILE.safetensors --name ID "
                             "(members: model files or installed model ids)")
    path = build_ensemble(args.files, args.out, args.name)
    print(f"wrote ensemble {args.name} of {len(args.files)} model(s) -> {path}; install it with "
          f"`strokeseg models import {path}`")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .apps.demo import run_demo

    return run_demo(Path(args.out))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strokeseg", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("segment", help="segment one case")
    p.add_argument("--dwi", required=True, help="DWI volume (3-D, or 4-D with a .bval/.json sidecar)")
    p.add_argument("--adc", required=True, help="ADC volume (any units)")
    p.add_argument("--out", required=True, help="output mask (.nii.gz, .nrrd, .mha), on the DWI's grid")
    p.add_argument("--prob", default=None, help="also write the lesion probability map")
    p.add_argument("--report", default=None, help="also write a JSON report (volumes, lesions, timings)")
    p.add_argument("--progress", default="bar", choices=["bar", "machine"], help=argparse.SUPPRESS)
    # The Slicer panel's Cancel: stop once this file exists.
    p.add_argument("--cancel-file", default=None, help=argparse.SUPPRESS)
    _add_inference_options(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("batch", help="segment every case under an ISLES 2022 root (both layouts)")
    p.add_argument("input_root", nargs="?", default=None)
    p.add_argument("--out", default=None, help="output folder (required unless --merge)")
    p.add_argument("--resume", action="store_true",
                   help="keep existing masks that read back and lie on the DWI grid; segment the rest")
    p.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                   help="only the I-th of N disjoint parts of the sorted case ids (1 <= I <= N), for array jobs")
    p.add_argument("--merge", default=None, metavar="DIR",
                   help="only rebuild DIR's volumes.csv from its per-case rows")
    p.add_argument("--prefetch", type=int, default=1, metavar="K",
                   help="prepared cases that may wait for the network (default 1; 0 reads, predicts, writes in turn)")
    _add_inference_options(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("evaluate", help="official ISLES 2022 metrics of predictions against ground truth")
    p.add_argument("--pred", required=True, help="folder with <case_id>_msk.nii.gz predictions")
    p.add_argument("--gt", required=True, help="ISLES root with derivatives/ masks")
    p.add_argument("--out", required=True, help="report folder (metrics.csv, summary.json, PNG plots)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("models", help="list, import or verify models, or build an ensemble of models")
    p.add_argument("action", nargs="?", default="list", choices=["list", "import", "verify", "ensemble"])
    p.add_argument("files", nargs="*", metavar="MODEL",
                   help="import: the model file; ensemble: the member models (files or installed ids)")
    p.add_argument("--replace", action="store_true", help="import over an installed model with the same id")
    p.add_argument("--out", default=None, help="ensemble: the ensemble file to write (.safetensors)")
    p.add_argument("--name", default=None, help="ensemble: its model id")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="the README's main job on a built-in default")
    p.add_argument("--out", default="output/demo")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    warnings.simplefilter("default")
    try:
        return int(args.func(args))
    except CancelledError as error:
        print(f"strokeseg: {error}", file=sys.stderr)
        return 130
    except StrokeSegError as error:
        print(f"strokeseg: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a disk or permission failure while writing: the message, not a traceback
        print(f"strokeseg: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
