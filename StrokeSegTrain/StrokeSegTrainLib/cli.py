"""``strokeseg-train``: one entry point, one subcommand per job (``train``, ``cv``, and the synthetic data generator).

Each subcommand module registers its parser with ``add_parsers(subparsers)`` and sets ``handler`` on it; this file
only dispatches, and turns a :class:`StrokeSegError` into its message and exit status 2 instead of a traceback.
"""
from __future__ import annotations

import argparse
import sys

from StrokeSegLib.common.errors import CancelledError, StrokeSegError

from . import __version__, bundle, commands, recipe
from .synth import command as synth_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strokeseg-train",
                                     description="Train and cross-validate StrokeSeg models on ISLES 2022 data.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parsers(subparsers)
    synth_command.add_parsers(subparsers)
    bundle.add_parsers(subparsers)
    recipe.add_parsers(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CancelledError as exc:
        print(f"strokeseg-train {args.command}: {exc} (resume with --resume)", file=sys.stderr)
        return 130
    except StrokeSegError as exc:
        print(f"strokeseg-train {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"strokeseg-train {args.command}: interrupted (resume with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
