"""Cases per minute of ``strokeseg batch``: the pipelined run (read and prepare ahead, write behind) against the plain
loop (``prefetch=0``), in one process, on the same cases, with the same model.

The cases are the real ISLES 2022 scans in ``../shared/data/ISLES-2022`` (three), repeated ``--repeat`` times under
new case ids (symbolic links, nothing copied) so that the pipeline has a queue to keep full. The model is the bundled
starter model unless ``--model`` says otherwise. Both modes run ``--rounds`` times, alternating, and the best round of
each counts (the least-disturbed run estimates the cost best on a shared machine).

Besides the throughput, the stage times of the plain loop are printed: reading + preparing, predicting, and
post-processing + writing. The pipeline can at best reach ``total / max(stage)`` of the loop's speed, so on a machine
where the network is fast (a GPU) and the CPU stages dominate, this is where the time goes.

    python bench/batch.py                      # 3 real cases x 2, 1 round
    python bench/batch.py --repeat 3 --rounds 2 --device cuda
    python bench/batch.py --features 4,8,16    # a small random network with the starter's preprocessing: a fast
                                               # network on the CPU, to see the pipeline where it matters
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT.parent / "shared" / "data" / "ISLES-2022"


def _link_cases(source: Path, target: Path, repeat: int) -> int:
    """``repeat`` copies (links) of every case under ``source`` with ids ``sub-rNxID_ses-...``; returns their count."""
    from StrokeSegLib.io.cases import find_cases

    count = 0
    for case in find_cases(source):
        subject, session = case.case_id.split("_", 1)
        for r in range(repeat):
            new_id = f"sub-r{r}x{subject[4:]}_{session}"
            folder = target / new_id.split("_")[0] / session / "dwi"
            folder.mkdir(parents=True, exist_ok=True)
            os.symlink(case.dwi.resolve(), folder / f"{new_id}_dwi.nii.gz")
            os.symlink(case.adc.resolve(), folder / f"{new_id}_adc.nii.gz")
            count += 1
    return count


class StageClock:
    """Wall seconds spent in each stage function of the batch module, summed over cases and threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[stage] += time.perf_counter() - t
        return timed


def _small_model(folder: Path, features: tuple[int, ...]) -> Path:
    """The starter model's metadata (preprocessing, patch, threshold) on a random network with ``features``."""
    import dataclasses

    import torch

    from StrokeSegLib.engine.model_file import save_model
    from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig
    from StrokeSegLib.engine.segmentation import get_model

    starter = get_model(None).metadata
    torch.manual_seed(0)
    config = NetworkConfig(features=features)
    network = AttentionUNet3D(config)
    with torch.no_grad():
        network.head.bias.fill_(-4.0)  # sparse predictions, as on real scans
    meta = dataclasses.replace(starter, model_id="bench-small", network=config.to_dict(),
                               description="random weights, for timing only")
    return save_model(folder / "small.safetensors", network, meta)


def _run(root: Path, out: Path, model: Any, options: Any, prefetch: int) -> tuple[float, dict[str, float], Any]:
    from StrokeSegLib.apps import batch

    clock = StageClock()
    originals = {name: getattr(batch, name) for name in
                 ("read_image", "prepare_inputs", "predict_prepared", "finish_prediction", "write_outputs")}
    stages = {"read_image": "read+prepare", "prepare_inputs": "read+prepare", "predict_prepared": "predict",
              "finish_prediction": "postprocess+write", "write_outputs": "postprocess+write"}
    for name, fn in originals.items():
        setattr(batch, name, clock.wrap(stages[name], fn))
    try:
        t = time.perf_counter()
        report = batch.run_batch(root, out, model, options, prefetch=prefetch, show_progress=False)
        wall = time.perf_counter() - t
    finally:
        for name, fn in originals.items():
            setattr(batch, name, fn)
    return wall, dict(clock.seconds), report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="an ISLES 2022 root (default: the shared cases)")
    parser.add_argument("--model", default=None, help="model id or file (default: the bundled starter model)")
    parser.add_argument("--features", default=None, help="e.g. 4,8,16: a small random network instead of --model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeat", type=int, default=2, help="how often each case is queued")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--prefetch", type=int, default=1, help="the pipelined run's queue of prepared cases")
    args = parser.parse_args(argv)

    import torch

    from StrokeSegLib.engine.segmentation import SegmentOptions, get_model

    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 1
    options = SegmentOptions(device=args.device)
    with tempfile.TemporaryDirectory(prefix="strokeseg-bench-batch-") as tmp:
        if args.features:
            args.model = _small_model(Path(tmp), tuple(int(v) for v in args.features.split(",")))
        model = get_model(args.model)
        root = Path(tmp) / "root"
        n = _link_cases(args.data, root, args.repeat)
        with torch.inference_mode():  # torch's one-off start-up costs are no part of either figure
            network = model.network
            network(torch.zeros(1, network.config.in_channels, *model.metadata.patch_size))
        best: dict[str, tuple[float, dict[str, float]]] = {}
        masks: dict[str, dict[str, bytes]] = {}
        for r in range(args.rounds):
            for label, prefetch in (("sequential", 0), ("pipelined", args.prefetch)):
                out = Path(tmp) / f"{label}-{r}"
                wall, stages, report = _run(root, out, model, options, prefetch)
                failed = report.failed
                if failed:
                    print(f"{label}: {len(failed)} case(s) failed: {failed[0].error}", file=sys.stderr)
                    return 1
                masks[label] = {p.name: p.read_bytes() for p in out.glob("*_msk.nii.gz")}
                print(f"round {r} {label}: {n} cases in {wall:.1f} s; stage seconds "
                      + ", ".join(f"{k}={v:.1f}" for k, v in sorted(stages.items())), flush=True)
                if label not in best or wall < best[label][0]:
                    best[label] = (wall, stages)
        same = masks["sequential"] == masks["pipelined"]
    seq_wall, seq_stages = best["sequential"]
    pipe_wall, _ = best["pipelined"]
    bound = sum(seq_stages.values()) / max(seq_stages.values())
    print(f"model={model.metadata.model_id} cases={n} threads={torch.get_num_threads()} device={options.device} "
          f"sequential_cases_per_min={60 * n / seq_wall:.2f} pipelined_cases_per_min={60 * n / pipe_wall:.2f} "
          f"ratio={seq_wall / pipe_wall:.3f} stage_bound={bound:.3f} identical_masks={same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
