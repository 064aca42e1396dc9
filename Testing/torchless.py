"""Run a snippet of StrokeSeg in a fresh Python where importing torch fails: what the Slicer panel does on opening."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch" or name == "safetensors.torch":
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
"""


def run_without_torch(body: str, home: Path) -> list[str]:
    """stdout lines of ``body`` run with torch blocked and ``STROKESEG_HOME=home``; fails the test on an error."""
    script = _BLOCK_TORCH + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "StrokeSeg"), "STROKESEG_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()
