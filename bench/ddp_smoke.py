"""A short DDP run under ``torchrun`` and its resume: does multi-process training work on this machine?

Writes a few small synthetic cases and a tiny configuration, trains ``--epochs`` epochs with
``torchrun --standalone --nproc_per_node=N -m StrokeSegTrainLib.cli train``, then resumes the same run for one more
epoch. On GPUs the processes talk through NCCL (one process per GPU; a single process started by torchrun still uses
a process group and DDP), on the CPU through gloo. Checks that the second run resumed, that the replicas agreed and
that the model loads, then prints one line::

    ddp_smoke device=cuda processes=1 backend=nccl first_s=<s> resume_s=<s> epochs=<n> resumed=yes replicas=identical

    python bench/ddp_smoke.py --device cuda --processes 1
    python bench/ddp_smoke.py --device cpu --processes 2     # the same with gloo
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASE_IDS = ("sub-s0_ses-0001", "sub-s1_ses-0001", "sub-s2_ses-0001", "sub-s3_ses-0001", "sub-s4_ses-0001")


def _config(epochs: int) -> dict:
    """A 3-level network on 16^3 patches at 4 mm: the whole pipeline in seconds."""
    from StrokeSegLib.engine.network_config import NetworkConfig
    from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig
    from StrokeSegTrainLib.config import TrainConfig

    return TrainConfig(network=NetworkConfig(features=(8, 16, 32), deep_supervision=True),
                       preprocess=PreprocessConfig(target_spacing=(4.0, 4.0, 4.0)), patch_size=(16, 16, 16),
                       batch_size=2, epochs=epochs, iterations_per_epoch=4, validate_every=1, num_folds=5,
                       val_batch_size=4).to_dict()


def _command(processes: int, root: Path, out: Path, config: Path, device: str, resume: bool) -> list[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "StrokeSegTrainLib.cli", "train", "--data", str(root), "--out", str(out), "--config",
               str(config), "--fold", "0", "--device", device, "--quiet"]
    return command + (["--resume"] if resume else [])


def _run(command: list[str], timeout: float) -> float:
    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-5000:]}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default; NCCL) or cpu (gloo)")
    parser.add_argument("--processes", type=int, default=1, help="processes on this machine (at most one per GPU)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the first run; the resume adds one")
    parser.add_argument("--timeout", type=float, default=240, help="seconds allowed for each torchrun")
    parser.add_argument("--dry-run", action="store_true", help="check the arguments and print the commands only")
    args = parser.parse_args(argv)
    if args.device not in ("cuda", "cpu") or args.processes < 1 or args.epochs < 1:
        parser.error("--device must be cuda or cpu, --processes and --epochs at least 1")

    from StrokeSegTrainLib.config import TrainConfig

    for epochs in (args.epochs, args.epochs + 1):
        TrainConfig.from_dict(_config(epochs)).validate()
    with tempfile.TemporaryDirectory(prefix="strokeseg-ddp-") as tmp:
        folder = Path(tmp)
        root, out = folder / "isles", folder / "run"
        first_config, resume_config = folder / "first.json", folder / "resume.json"
        first = _command(args.processes, root, out, first_config, args.device, resume=False)
        resume = _command(args.processes, root, out, resume_config, args.device, resume=True)
        if args.dry_run:
            print("would run:\n  " + " ".join(first) + "\n  " + " ".join(resume))
            return 0

        from StrokeSegLib.apps.phantom import make_synthetic_case, write_synthetic_case
        from StrokeSegLib.engine.model_file import load_model

        for seed, case_id in enumerate(CASE_IDS):
            write_synthetic_case(make_synthetic_case(seed=seed, size=(32, 32, 20), spacing=(4.0, 4.0, 6.0)), root,
                                 case_id)
        first_config.write_text(json.dumps(_config(args.epochs)))
        resume_config.write_text(json.dumps(_config(args.epochs + 1)))
        first_s = _run(first, args.timeout)
        resume_s = _run(resume, args.timeout)

        fold = out / "fold_0"
        log = (fold / "train.log").read_text(encoding="utf-8")
        history = json.loads((fold / "history.json").read_text(encoding="utf-8"))
        resumed = f"resumed {fold / 'checkpoint.pt'} after epoch {args.epochs}" in log
        agree = f"DDP: model replicas identical on {args.processes} processes" in log
        load_model(fold / "model.safetensors")
        backend = "nccl" if args.device == "cuda" else "gloo"
        print(f"ddp_smoke device={args.device} processes={args.processes} backend={backend} first_s={first_s:.1f} "
              f"resume_s={resume_s:.1f} epochs={len(history)} resumed={'yes' if resumed else 'NO'} "
              f"replicas={'identical' if agree else 'NOT CHECKED OR DIFFERENT'}")
        return 0 if resumed and agree and len(history) == args.epochs + 1 else 1


if __name__ == "__main__":
    sys.exit(main())
