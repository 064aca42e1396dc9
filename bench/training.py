"""Training throughput (patches per second) and peak memory, against a MONAI pipeline doing the same work.

Both pipelines train the same network (StrokeSeg's attention U-Net with deep supervision) with the same loss, optimiser,
patch size, batch size and augmentations on the same preprocessed cases; they differ only in how batches are made:

* ours: :class:`PatchSampler` (memory-mapped cache, foreground oversampling) and :func:`augment_batch` (one
  ``grid_sample`` for image and mask, intensity transforms on the chosen samples), both in prefetch threads as the
  trainer runs them (:func:`to_device_batch`: on a GPU the threads pin the batch, copy it and augment it there);
* MONAI: padding and ``FgBgToIndicesd`` cached once, then ``RandCropByPosNegLabeld`` (pos 1 : neg 2, the same 0.33
  foreground fraction, from the cached indices), ``RandFlipd`` per axis,
  ``RandAffined`` (rotation and isotropic scaling), ``RandGaussianNoised``, ``RandGaussianSmoothd``,
  ``RandScaleIntensityd`` (brightness), ``RandScaleIntensityFixedMeand`` (contrast), ``RandSimulateLowResolutiond``
  and ``RandAdjustContrastd`` (gamma), per sample, through a ``DataLoader`` with worker processes (pinned batches
  copied to the GPU asynchronously when training on one).

With ``--device cuda`` both train with AMP and the fused AdamW, as the trainer does there, and the clocks stop only
after the GPU has finished (``torch.cuda.synchronize``); ``peak_gpu_mb`` is the most GPU memory torch allocated.

Each pipeline runs in its own fresh process so that ``peak_rss_mb`` (maximum resident set size, workers excluded)
is its own; with ``--repeats`` the pipelines alternate and medians are reported, because on a shared machine the
load changes between runs. ``data_patches_per_s`` times batch making and augmentation alone (no network), which is
where the two pipelines differ; ``patches_per_s`` times full training steps after warm-up.

    python bench/training.py                                  # defaults: 4 ISLES-sized cases, 20 steps
    python bench/training.py --features 16,32,64,128,256 --patch 64,96,96 --steps 10
    python bench/training.py --device cuda --features 16,32,64,128,256 --patch 64,96,96 --workers 6

The last line is ``patches_per_s=<x> monai_patches_per_s=<x> peak_rss_mb=<x> ratio_vs_monai=<x>``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _config(args: argparse.Namespace):
    from StrokeSegLib.engine.network_config import NetworkConfig
    from StrokeSegTrainLib.config import TrainConfig

    return TrainConfig(network=NetworkConfig(features=args.features, deep_supervision=True),
                       patch_size=args.patch, batch_size=args.batch, prefetch_batches=args.workers,
                       amp=args.device == "cuda")


def _make_cases(folder: Path, count: int) -> list[str]:
    """ISLES-sized synthetic cases (112x112x73 at 2 mm) in the preprocessing cache; returns the entry folders."""
    from StrokeSegLib.apps.phantom import make_synthetic_case, write_synthetic_case
    from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig
    from StrokeSegTrainLib.data_cache import build_entry

    entries = []
    for seed in range(count):
        case = write_synthetic_case(make_synthetic_case(seed=seed, size=(112, 112, 73), spacing=(2.0, 2.0, 2.0)),
                                    folder / "isles", f"sub-bench{seed}")
        entries.append(str(build_entry(case, folder / "cache", PreprocessConfig())))  # default float32
    return entries


def _training_parts(args: argparse.Namespace):
    import torch

    from StrokeSegLib.engine.devices import uses_grad_scaler
    from StrokeSegLib.engine.network import AttentionUNet3D
    from StrokeSegTrainLib.export import training_network_config
    from StrokeSegTrainLib.losses import DeepSupervisionLoss, SegmentationLoss

    config = _config(args)
    device = torch.device(args.device)
    torch.manual_seed(0)
    network = AttentionUNet3D(training_network_config(config)).to(device).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=3e-4, fused=True if device.type == "cuda" else None)
    scaler = torch.amp.GradScaler(device.type, enabled=uses_grad_scaler(device, config.amp))
    return config, network, optimizer, scaler, DeepSupervisionLoss(SegmentationLoss(config.loss))


def _ours(args: argparse.Namespace, entries: list[str]):
    """Endless iterator of augmented (image, mask) batches from our sampler and augmentation, on the device."""
    import functools

    import torch

    from StrokeSegTrainLib.data_cache import open_entry
    from StrokeSegTrainLib.sampler import PatchSampler
    from StrokeSegTrainLib.trainer import to_device_batch

    config = _config(args)
    sampler = PatchSampler([open_entry(e) for e in entries], config.patch_size, config.batch_size,
                           config.foreground_fraction, seed=0)
    transform = functools.partial(to_device_batch, device=torch.device(args.device),
                                  augmentation=config.augmentation)  # as the trainer does, in the prefetch threads
    while True:
        for _, image, mask in sampler.iterate(sampler.plan_epoch(50), prefetch=args.workers, transform=transform):
            yield image, mask


def _monai(args: argparse.Namespace, entries: list[str]):
    """The same work expressed as a standard MONAI dictionary pipeline."""
    import monai.transforms as T
    import numpy as np
    from monai.data import CacheDataset, DataLoader, Dataset
    from monai.utils import set_determinism

    from StrokeSegTrainLib.data_cache import open_entry

    config = _config(args)
    a = config.augmentation
    set_determinism(0)
    data = []
    for entry in entries:
        case = open_entry(entry)
        data.append({"image": np.array(case.image, dtype=np.float32), "label": np.array(case.mask)[None]})
    keys = ["image", "label"]
    angle = np.deg2rad(a.rotation_degrees[1])
    scale = a.scale_range[1] - 1.0
    # Deterministic part cached once, as MONAI recommends (our cache likewise stores the lesion voxel indices).
    prepare = T.Compose([T.SpatialPadd(keys, spatial_size=config.patch_size),
                         T.FgBgToIndicesd("label", fg_postfix="_fg", bg_postfix="_bg")])
    transforms = T.Compose([
        T.RandCropByPosNegLabeld(keys, label_key="label", spatial_size=config.patch_size, pos=1, neg=2,
                                 num_samples=1, fg_indices_key="label_fg", bg_indices_key="label_bg"),
        *[T.RandFlipd(keys, prob=a.flip_probability, spatial_axis=axis) for axis in a.flip_axes],
        T.RandAffined(keys, prob=1 - (1 - a.rotation_probability) * (1 - a.scale_probability),
                      rotate_range=(angle, angle, angle), scale_range=(scale, scale, scale),
                      mode=("bilinear", "nearest"), padding_mode="zeros"),
        T.RandGaussianNoised("image", prob=a.noise_probability, std=a.noise_std[1]),
        T.RandGaussianSmoothd("image", prob=a.blur_probability, sigma_x=a.blur_sigma, sigma_y=a.blur_sigma,
                              sigma_z=a.blur_sigma),
        T.RandScaleIntensityd("image", factors=a.brightness_range[1] - 1.0, prob=a.brightness_probability),
        T.RandScaleIntensityFixedMeand("image", factors=a.contrast_range[1] - 1.0, prob=a.contrast_probability),
        T.RandSimulateLowResolutiond("image", prob=a.lowres_probability,
                                     zoom_range=(1 / a.lowres_factor[1], 1 / a.lowres_factor[0])),
        T.RandAdjustContrastd("image", prob=a.gamma_probability, gamma=a.gamma_range),
    ])
    cached = CacheDataset(data, transform=prepare, progress=False)
    dataset = Dataset([cached[i] for i in range(len(cached))] * 1000, transform=transforms)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=args.workers,
                        persistent_workers=True, pin_memory=args.device == "cuda")
    while True:
        for batch in loader:
            yield (batch["image"].as_tensor().float().to(args.device, non_blocking=True),
                   batch["label"].as_tensor().float().to(args.device, non_blocking=True))


def _worker(pipeline: str, args: argparse.Namespace, entries: list[str], queue: Any) -> None:
    import torch

    from StrokeSegTrainLib.trainer import train_step

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    def wait() -> None:  # GPU work is asynchronous: a clock read before it finishes would flatter either pipeline
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    batches = (_ours if pipeline == "ours" else _monai)(args, entries)
    for _ in range(args.warmup):
        next(batches)
    wait()
    started = time.perf_counter()
    for _ in range(args.data_steps):
        next(batches)
    wait()
    data_s = time.perf_counter() - started
    config, network, optimizer, scaler, loss_fn = _training_parts(args)
    for _ in range(args.warmup):
        image, mask = next(batches)
        train_step(network, optimizer, scaler, loss_fn, image, mask, config, device)
    wait()
    started = time.perf_counter()
    for _ in range(args.steps):
        image, mask = next(batches)
        train_step(network, optimizer, scaler, loss_fn, image, mask, config, device)
    wait()
    train_s = time.perf_counter() - started
    peak_gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    queue.put({"pipeline": pipeline, "patches_per_s": args.steps * args.batch / train_s,
               "data_patches_per_s": args.data_steps * args.batch / data_s, "peak_rss_mb": _peak_rss_mb(),
               "peak_gpu_mb": peak_gpu})
    batches.close()


def _run(pipeline: str, args: argparse.Namespace, entries: list[str]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_worker, args=(pipeline, args, entries, queue))
    process.start()
    result = queue.get()
    process.join(timeout=60)
    return result


def _median(results: list[dict[str, Any]]) -> dict[str, float]:
    """Per-key median over repeated runs of one pipeline."""
    keys = ("patches_per_s", "data_patches_per_s", "peak_rss_mb", "peak_gpu_mb")
    return {k: statistics.median(r[k] for r in results) for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=4, help="synthetic ISLES-sized cases (default 4)")
    parser.add_argument("--features", type=_ints, default=(8, 16, 32, 64, 128), help="network features")
    parser.add_argument("--patch", type=_ints, default=(48, 64, 64), help="patch size z,y,x (default 48,64,64)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per pipeline")
    parser.add_argument("--data-steps", type=int, default=30, help="timed data-only batches per pipeline")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per pipeline (default 2)")
    parser.add_argument("--workers", type=int, default=2,
                        help="our prefetch threads and MONAI's DataLoader worker processes (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs per pipeline; medians reported")
    parser.add_argument("--dry-run", action="store_true", help="check the arguments, print the plan, measure nothing")
    args = parser.parse_args(argv)
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
    if args.dry_run:
        _config(args).validate()
        print(f"would time {args.steps} training steps per pipeline on {args.device}: network {args.features}, "
              f"patch {args.patch}, batch {args.batch}, {args.workers} workers")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        entries = _make_cases(Path(tmp), args.cases)
        print(f"prepared {args.cases} cases in {time.perf_counter() - started:.1f} s; network {args.features}, "
              f"patch {args.patch}, batch {args.batch}, {args.threads} threads, {args.workers} workers, "
              f"device {args.device}", flush=True)
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "monai": []}
        for _ in range(args.repeats):  # alternate, so a change in machine load hits both pipelines alike
            for pipeline in runs:
                runs[pipeline].append(_run(pipeline, args, entries))
                print(json.dumps(runs[pipeline][-1]), flush=True)
    ours, monai = _median(runs["ours"]), _median(runs["monai"])
    print(f"data only: ours {ours['data_patches_per_s']:.2f} patches/s, MONAI {monai['data_patches_per_s']:.2f} "
          f"patches/s, ratio {ours['data_patches_per_s'] / monai['data_patches_per_s']:.2f}")
    print(f"MONAI peak RSS {monai['peak_rss_mb']:.0f} MB (main process; its 2 workers not included)")
    gpu = f" peak_gpu_mb={ours['peak_gpu_mb']:.0f}" if args.device != "cpu" else ""
    print(f"patches_per_s={ours['patches_per_s']:.3f} monai_patches_per_s={monai['patches_per_s']:.3f} "
          f"peak_rss_mb={ours['peak_rss_mb']:.0f} ratio_vs_monai={ours['patches_per_s'] / monai['patches_per_s']:.3f}"
          f"{gpu} device={args.device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
