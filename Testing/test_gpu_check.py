"""``bench/gpu_check.sh --dry-run``: every step of the GPU check exists and its arguments parse, here on the CPU, so
that the first lent GPU machine runs it without surprises (the real run needs a GPU; see bench/README.md)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

STEPS = ("cuda-tests", "inference-bundled", "inference-default", "training", "ddp-torchrun")


@pytest.mark.slow
def test_gpu_check_dry_run_parses_every_step(tmp_path: Path) -> None:
    results = tmp_path / "figures" / "gpu_check.txt"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(PROJECT_ROOT / "bench" / "gpu_check.sh"), "--dry-run", "--out", str(results),
                           "--wheels", str(tmp_path / "no-wheels")], env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr + (results.with_suffix(".log").read_text()
                                                              if results.with_suffix(".log").is_file() else "")
    text = results.read_text()
    for step in STEPS:
        assert f"## {step}: ok" in text, text
    log = results.with_suffix(".log").read_text()
    assert "test_cuda.py::test_out_of_memory_falls_back_to_cpu" in log, "the CUDA tests must be collected"
    assert "--nproc_per_node=1" in log and "--resume" in log


def test_gpu_check_refuses_unknown_arguments() -> None:
    done = subprocess.run(["bash", str(PROJECT_ROOT / "bench" / "gpu_check.sh"), "--fast"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "unknown argument --fast" in done.stderr
