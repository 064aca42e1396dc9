"""Whole-case inference latency and peak memory, against the network's own floor and against MONAI.

Why these three numbers: ``end_to_end_s`` is what a user waits for (read, align, prepare, predict, post-process, write,
through :func:`StrokeSegLib.engine.segmentation.segment_files`); ``floor_s`` is the bare forward passes of the same
network over the same windows of the same prepared image (no blending, no I/O: nothing can be faster with this network);
``monai_s`` is MONAI's ``sliding_window_inference`` with the same network, patch, overlap, batch size and Gaussian
blending, followed by the sigmoid (the peer). ``predict_s`` (our sliding window alone, from the segmentation report)
against ``monai_s`` is the like-for-like comparison; ``end_to_end_s`` against both shows what the rest costs. Without
MONAI installed (``bench/requirements.txt``) the MONAI figures are ``nan`` and the rest is measured as usual.

Each case runs in its own fresh process so that ``peak_rss_mb`` (the process's maximum resident set size, read just
after the end-to-end run, so it includes Python, torch and the model) belongs to that case alone. Every process first
runs one warm-up forward pass so that none of the three timings pays torch's one-off start-up costs.

With ``--device cuda`` the network, the floor and MONAI run on the GPU at the precision ``strokeseg segment`` uses
there (``INFERENCE_AMP``), each clock stops after the GPU has finished, and MONAI's result is brought back to the CPU
as ours is; ``peak_gpu_mb`` is the most GPU memory torch allocated.

The network has random weights unless ``--model`` is given (speed does not depend on the weights); its output bias is
set so that predictions are sparse, as on real scans, so that post-processing is not timed on noise. ``--model`` takes
a model file or an installed id, an ensemble included (then the floor and MONAI run every member per window).

    python bench/inference.py                      # both cases, default network and patch
    python bench/inference.py --cases isles --features 8,16,32,64,128
    python bench/inference.py --device cuda --cases isles --repeats 3
    python bench/inference.py --cases isles --model strokeseg-starter --repeats 2
"""
from __future__ import annotations

import argparse
import multiprocessing
import queue as queue_module
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CASES: dict[str, tuple[tuple[int, int, int], tuple[float, float, float]]] = {
    # name: (size, spacing), both (x, y, z) as SimpleITK orders them
    "isles": ((112, 112, 73), (2.0, 2.0, 2.0)),
    "large": ((256, 256, 76), (0.9, 0.9, 2.0)),
}


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _timed(fn: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call; CPU time is the steadier figure on a busy machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _best(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """Element-wise minimum: the least-disturbed run estimates the cost best."""
    return min(a[0], b[0]), min(a[1], b[1])


def _make_model(folder: Path, args: argparse.Namespace) -> Path:
    import torch

    from StrokeSegLib.engine.model_file import ModelMetadata, save_model
    from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig
    from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig

    if args.model:
        return Path(args.model)
    torch.manual_seed(0)
    config = NetworkConfig(features=args.features)
    network = AttentionUNet3D(config)
    with torch.no_grad():
        network.head.bias.fill_(-4.0)  # sparse predictions, as on real scans
    meta = ModelMetadata(model_id="bench-random", network=config.to_dict(), patch_size=args.patch,
                         preprocess=PreprocessConfig(target_spacing=(2.0, 2.0, 2.0)), threshold=0.5, min_lesion_mm3=0.0,
                         description="random weights, for timing only")
    return save_model(folder / "bench.safetensors", network, meta)


def _measure_case(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Runs in a fresh process: write the case, warm up, then time end-to-end, floor and MONAI."""
    import SimpleITK as sitk
    import torch

    from StrokeSegLib.apps.phantom import make_synthetic_case
    from StrokeSegLib.engine.devices import INFERENCE_AMP, autocast_context
    from StrokeSegLib.engine.model_file import load_model
    from StrokeSegLib.engine.segmentation import SegmentOptions, segment_files
    from StrokeSegLib.engine.sliding_window import iter_window_starts, pad_to_patch
    from StrokeSegLib.preprocessing.prepare import prepare_case

    try:
        from monai.inferers import sliding_window_inference
    except ImportError:  # the peer, not a dependency: its figures become nan
        sliding_window_inference = None
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    def wait() -> None:  # GPU work is asynchronous: stop a clock only once it has finished
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    size, spacing = CASES[name]
    with tempfile.TemporaryDirectory(prefix="strokeseg-bench-") as tmp:
        folder = Path(tmp)
        case = make_synthetic_case(seed=1, size=size, spacing=spacing)
        dwi_path, adc_path = folder / "dwi.nii.gz", folder / "adc.nii.gz"
        sitk.WriteImage(case.dwi, str(dwi_path), True)
        sitk.WriteImage(case.adc, str(adc_path), True)
        model_path = _make_model(folder, args)
        loaded = load_model(model_path)
        network, meta = loaded.network.to(device), loaded.metadata
        patch = tuple(meta.patch_size)

        with torch.inference_mode(), autocast_context(device, INFERENCE_AMP):  # warm-up: one-off kernel selection
            network(torch.zeros(args.batch_size, network.config.in_channels, *patch, device=device))
        wait()

        options = SegmentOptions(device=args.device, overlap=args.overlap, batch_size=args.batch_size)
        reports: list[dict[str, Any]] = []

        def end_to_end() -> None:
            result = segment_files(dwi_path, adc_path, model=model_path, options=options,
                                   out_mask=folder / "mask.nii.gz")
            reports.append(dict(result.report["timings"], device=result.report["device"]))

        if device.type == "cuda":  # the first run on a GPU also pays for cuDNN's kernel choice at this case's shapes
            end_to_end()
            reports.clear()
            torch.cuda.reset_peak_memory_stats(device)
        e2e = _timed(end_to_end)  # first timed run alone, so that the peak RSS is the end-to-end one
        peak_rss = _peak_rss_mb()
        peak_gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0

        prepared = prepare_case(case.dwi, case.adc, meta.preprocess_config())
        image = torch.from_numpy(prepared.image).to(device)
        padded, _ = pad_to_patch(image, patch)
        starts = iter_window_starts(tuple(padded.shape[1:]), patch, args.overlap)
        pz, py, px = patch

        def floor() -> None:
            with torch.inference_mode(), autocast_context(device, INFERENCE_AMP):
                for i in range(0, len(starts), args.batch_size):
                    batch = torch.stack([padded[:, z:z + pz, y:y + py, x:x + px]
                                         for z, y, x in starts[i:i + args.batch_size]])
                    network(batch)
            wait()

        def monai() -> None:
            with torch.inference_mode(), autocast_context(device, INFERENCE_AMP):
                logits = sliding_window_inference(image[None], roi_size=patch, sw_batch_size=args.batch_size,
                                                  predictor=network, overlap=args.overlap, mode="gaussian",
                                                  sigma_scale=0.125)
                torch.sigmoid(logits.float()).cpu()

        with_monai = sliding_window_inference is not None
        floor_t, monai_t = _timed(floor), _timed(monai) if with_monai else (float("nan"), float("nan"))
        for _ in range(args.repeats - 1):  # interleaved, so that a burst of load elsewhere hits all three alike
            e2e = _best(e2e, _timed(end_to_end))
            floor_t = _best(floor_t, _timed(floor))
            if with_monai:
                monai_t = _best(monai_t, _timed(monai))
        timings = min(reports, key=lambda r: r["total_s"])

    return {
        "case": name,
        "native_size": size,
        "network_shape_zyx": tuple(image.shape[1:]),
        "patch": patch,
        "windows": len(starts),
        "threads": torch.get_num_threads(),
        "end_to_end_s": e2e[0],
        "floor_s": floor_t[0],
        "monai_s": monai_t[0],
        "cpu_s": {"end_to_end": e2e[1], "floor": floor_t[1], "monai": monai_t[1]},
        "peak_rss_mb": peak_rss,
        "peak_gpu_mb": peak_gpu,
        "device": timings.pop("device"),
        "timings": timings,
    }


def _child(name: str, args: argparse.Namespace, queue: Any) -> None:
    try:
        queue.put(_measure_case(name, args))
    except BaseException as exc:  # report to the parent instead of dying silently
        queue.put({"case": name, "error": f"{type(exc).__name__}: {exc}"})


def run_case(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one case in a fresh process (so its peak RSS is its own)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, args, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not proc.is_alive():  # killed (out of memory?) before it could report
                return {"case": name, "error": f"the benchmark process died (exit code {proc.exitcode})"}
    proc.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="isles,large", help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--model", help="a StrokeSeg model file or installed model id, an ensemble included "
                                        "(default: random weights, default network)")
    parser.add_argument("--features", type=_ints, default=(16, 32, 64, 128, 256))
    parser.add_argument("--patch", type=_ints, default=(64, 96, 96), help="z,y,x (ignored with --model)")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=1, help="time each measurement this often, keep the best")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dry-run", action="store_true", help="check the arguments, print the plan, measure nothing")
    args = parser.parse_args(argv)
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
    if args.model:
        from StrokeSegLib.common.errors import StrokeSegError
        from StrokeSegLib.engine.model_registry import resolve_model

        try:
            args.model = str(resolve_model(args.model))
        except StrokeSegError as error:
            parser.error(f"--model: {error}")
    if args.dry_run:
        for name in args.cases.split(","):
            if name not in CASES:
                parser.error(f"unknown case {name!r}; choose from {', '.join(CASES)}")
        print(f"would time cases {args.cases} on {args.device} with model {args.model or 'random, features '}"
              f"{'' if args.model else args.features}, batch {args.batch_size}, {args.repeats} repeat(s)")
        return 0

    results = []
    for name in args.cases.split(","):
        if name not in CASES:
            parser.error(f"unknown case {name!r}; choose from {', '.join(CASES)}")
        result = run_case(name, args)
        if "error" in result:
            print(f"case={name} failed: {result['error']}", file=sys.stderr)
            return 1
        results.append(result)
        t = result["timings"]
        print(f"[{name}] native {result['native_size']} (x,y,z) -> network {result['network_shape_zyx']} (z,y,x), "
              f"patch {result['patch']}, {result['windows']} windows, {result['threads']} threads, "
              f"predicted on {result['device']}")
        print("  stages: " + ", ".join(f"{k}={v:.2f}" for k, v in t.items()))
        predict = t.get("predict_s", float("nan"))
        print(f"  our sliding window {predict:.2f} s vs MONAI {result['monai_s']:.2f} s "
              f"(ratio {predict / result['monai_s']:.3f}); vs bare forwards {result['floor_s']:.2f} s "
              f"(ratio {predict / result['floor_s']:.3f})")
        cpu = result["cpu_s"]
        print(f"  CPU seconds: end-to-end {cpu['end_to_end']:.2f}, floor {cpu['floor']:.2f}, MONAI {cpu['monai']:.2f}",
              flush=True)

    for r in results:
        gpu = f" peak_gpu_mb={r['peak_gpu_mb']:.0f}" if args.device != "cpu" else ""
        print(f"case={r['case']} end_to_end_s={r['end_to_end_s']:.2f} floor_s={r['floor_s']:.2f} "
              f"monai_s={r['monai_s']:.2f} peak_rss_mb={r['peak_rss_mb']:.0f} "
              f"overhead_vs_floor={r['end_to_end_s'] / r['floor_s']:.3f} "
              f"ratio_vs_monai={r['end_to_end_s'] / r['monai_s']:.3f} "
              f"predict_s={r['timings'].get('predict_s', float('nan')):.3f}{gpu} device={r['device']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
