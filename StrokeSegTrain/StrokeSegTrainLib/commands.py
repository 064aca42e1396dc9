"""The ``train`` and ``cv`` subcommands of ``strokeseg-train`` (registered by ``cli.py``).

Kept apart from ``cli.py`` so the dispatcher stays a few lines and each subcommand's options live with their handler.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from StrokeSegLib.common.progress import CancelFile, MachineProgress

from .config import TrainConfig, load_config


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path,
                        help="ISLES 2022 root (Zenodo or Grand Challenge layout) or a CSV with case_id,dwi,adc,mask")
    parser.add_argument("--out", required=True, type=Path, help="run folder (splits.json, cache/, fold_<k>/)")
    parser.add_argument("--config", type=Path, default=None, help="training configuration (JSON); defaults otherwise")
    parser.add_argument("--epochs", type=int, default=None, help="override the configuration's number of epochs")
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu (default: auto)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint(s) in --out")
    parser.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder (default: OUT/cache)")
    parser.add_argument("--init-from", default=None, metavar="MODEL",
                        help="fine-tune: start from this model file or installed model id (e.g. strokeseg-starter) "
                             "instead of random weights; overrides the configuration's init_from")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, only the per-epoch log lines")
    # The Slicer panel's channel: progress lines as `strokeseg segment --progress machine` prints them, and Cancel.
    parser.add_argument("--progress", default="bar", choices=["bar", "machine"], help=argparse.SUPPRESS)
    parser.add_argument("--cancel-file", default=None, help=argparse.SUPPRESS)


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``cv``."""
    train = subparsers.add_parser("train", help="train one cross-validation fold and export its model",
                                  description="Train fold K; writes OUT/fold_K/{checkpoint.pt,best.pt,history.*,"
                                              "curves.png,validation/,model.safetensors}. Under torchrun "
                                              "--nproc_per_node=N the same command trains with DDP.")
    _common(train)
    train.add_argument("--fold", type=int, default=0, help="fold to train (0-based, default 0)")
    train.set_defaults(handler=run_train)
    cv = subparsers.add_parser("cv", help="train all folds, then write the pooled metrics.csv and summary.json",
                               description="K-fold cross-validation with patient-level folds; the pooled report in "
                                           "OUT has the format of `strokeseg evaluate`.")
    _common(cv)
    cv.add_argument("--folds", default=None, help="comma-separated subset of folds, e.g. 0,1 (default: all)")
    cv.set_defaults(handler=run_cv_command)


def _setup(args: argparse.Namespace) -> tuple[TrainConfig, str]:
    """Logging to stdout (the Slicer panel parses the epoch lines), the configuration, and the command line."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    config = load_config(args.config)
    if args.epochs is not None:
        config = config.with_overrides(epochs=args.epochs)
    if args.init_from is not None:
        config = config.with_overrides(init_from=args.init_from)
    config.validate()
    return config, " ".join(shlex.quote(a) for a in ["strokeseg-train", *sys.argv[1:]])


def _panel_channel(args: argparse.Namespace) -> tuple[MachineProgress | None, CancelFile]:
    """Machine progress lines (``--progress machine``) and the cooperative cancel (``--cancel-file``)."""
    return (MachineProgress() if args.progress == "machine" else None), CancelFile(args.cancel_file)


def run_train(args: argparse.Namespace) -> int:
    from .trainer import train

    config, command = _setup(args)
    progress, cancel = _panel_channel(args)
    result = train(config, args.data, args.out, args.fold, progress, cancel, device=args.device, resume=args.resume,
                   cache_dir=args.cache, show_progress=not args.quiet and progress is None, command=command)
    if result.model_path is not None:
        print(f"best validation Dice {result.best_dice:.4f} at epoch {result.best_epoch}; model {result.model_path}")
    return 0


def run_cv_command(args: argparse.Namespace) -> int:
    from .cross_validation import run_cv

    config, command = _setup(args)
    progress, cancel = _panel_channel(args)
    folds = None if args.folds is None else [int(f) for f in args.folds.split(",") if f.strip()]
    result = run_cv(config, args.data, args.out, folds, progress, cancel, device=args.device, resume=args.resume,
                    cache_dir=args.cache, show_progress=not args.quiet and progress is None, command=command)
    mean = result.summary.get("mean", {})
    if result.summary:
        print(f"cross-validation: {len(result.rows)} cases, mean Dice {mean.get('dice')}, "
              f"lesion F1 {mean.get('lesion_f1')}, AVD {mean.get('avd_ml')} mL -> {args.out / 'metrics.csv'}")
    return 0
