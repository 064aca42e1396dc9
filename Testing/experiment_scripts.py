"""Load a script of docs/experiments (not a package) as a module, for the tests of the figures it produces."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

EXPERIMENTS = Path(__file__).resolve().parents[1] / "docs" / "experiments"


def load_experiment_script(name: str) -> ModuleType:
    """docs/experiments/``name``.py, executed as a module named ``name``."""
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
