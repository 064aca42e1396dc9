"""Run the ``strokeseg`` command line inside Slicer's Python.

    Slicer --no-main-window --python-script /path/to/StrokeSeg/Resources/Scripts/strokeseg_cli.py batch ROOT --out DIR

Arguments are exactly those of ``strokeseg``. Slicer keeps running after a ``--python-script`` unless told to exit,
so this script always exits with the command's status.
"""
from __future__ import annotations

import sys
from pathlib import Path

# The module folder holds StrokeSegLib; in an installed extension it is on sys.path already, in a source tree it is not.
MODULE_DIR = Path(__file__).resolve().parents[2]
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from StrokeSegLib.cli import main  # noqa: E402

status = main(sys.argv[1:])
try:
    import slicer

    in_slicer_app = getattr(slicer, "app", None) is not None
except ImportError:
    in_slicer_app = False
if in_slicer_app:
    slicer.util.exit(status)
else:
    sys.exit(status)
