"""The training run of one fold: ``train(config, data, out, fold)``, resumable, optionally distributed.

Run folder layout (shared with ``cv``, so folds trained separately, even on different machines, form one
cross-validation)::

    <out>/splits.json                  patient-level folds, created once and reused
    <out>/cache/                       preprocessed cases (memory-mapped .npy)
    <out>/fold_<k>/checkpoint.pt       everything needed to resume (rewritten atomically after every epoch)
    <out>/fold_<k>/best.pt             weights of the epoch with the best validation Dice
    <out>/fold_<k>/history.{csv,json}, curves.png, train.log
    <out>/fold_<k>/validation/         metrics.csv, summary.json and predictions of the best model (native space)
    <out>/fold_<k>/model.safetensors   the exported model, loadable by ``strokeseg segment``

Why the resume is exact: the only sources of randomness are the sampler's epoch plan (one generator, checkpointed),
per-batch augmentation seeds drawn from that plan, and the global generators (checkpointed); with
``deterministic=True`` on the CPU, an interrupted and resumed run reproduces an uninterrupted one bit for bit.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from StrokeSegLib.common.atomic import write_json_atomic, write_text_atomic
from StrokeSegLib.common.errors import StrokeSegError
from StrokeSegLib.common.progress import CancelToken, ProgressCallback, check_cancel, report
from StrokeSegLib.engine.devices import autocast_context, uses_grad_scaler
from StrokeSegLib.engine.network import AttentionUNet3D

from . import distributed
from .augmentation import augment_batch
from .checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .config import AugmentationConfig, TrainConfig
from .data_cache import CachedCase, build_cache
from .dataset import load_training_cases
from .export import export_model, training_network_config
from .history import History
from .initial_weights import check_initial_weights, load_initial_weights
from .losses import DeepSupervisionLoss, SegmentationLoss
from .reports import read_metrics_csv, write_metrics_report
from .sampler import PatchSampler, PlannedBatch
from .splits import load_or_create_splits
from .validation import ValidationResult, validate
from .weight_average import WeightAverage

log = logging.getLogger("StrokeSegTrainLib")

# Settings that may change between a run and its resume; anything else would make the resumed run a different run.
RESUMABLE_CHANGES = ("epochs", "early_stopping_patience", "prefetch_batches", "val_batch_size")
_BAR_EVERY = 10  # progress-bar loss refresh, in steps (each refresh waits for the GPU)


@dataclass
class TrainResult:
    """What a finished (or early-stopped) fold produced."""

    fold_dir: Path
    best_epoch: int | None
    best_dice: float
    model_path: Path | None
    history: History
    validation: ValidationResult | None = None
    stopped_early: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def fold_dir(out: str | Path, fold: int) -> Path:
    return Path(out) / f"fold_{fold}"


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    """Seed every generator; with ``deterministic`` also force deterministic kernels (slower on GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = device.type == "cuda"


def _config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs.extend(_config_differences(a, b, f"{prefix}{key}."))
        elif a != b and f"{prefix}{key}" not in RESUMABLE_CHANGES:
            diffs.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return diffs


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               loss_fn: torch.nn.Module, image: torch.Tensor, mask: torch.Tensor, config: TrainConfig,
               device: torch.device,
               info: distributed.DistInfo = distributed.DistInfo()) -> torch.Tensor:  # noqa: B008 (frozen dataclass)
    """One optimisation step (autocast, scaled backward, clipping); returns the loss as a 0-d tensor on the device,
    NaN when the step was skipped. Nothing here waits for the GPU: callers read the losses once per epoch.

    A non-finite loss on any process skips the update on every process: the finite flag is and-ed over processes
    before the backward pass, which all of them still run (DDP's gradient all-reduce needs every process), and the
    optimiser then leaves weights, momentum and weight decay untouched everywhere, so the replicas stay identical.
    """
    optimizer.zero_grad(set_to_none=True)
    with autocast_context(device, config.amp):
        outputs = model(image)
    loss = loss_fn(outputs, mask).float()
    finite = distributed.all_true(torch.isfinite(loss.detach()), info)
    scaler.scale(loss).backward()
    if scaler.is_enabled():  # the scaler skips on non-finite gradients: make sure it sees this step's as such
        _poison_gradients(optimizer, finite)
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
    if scaler.is_enabled():
        scaler.step(optimizer)
    else:
        step_if(optimizer, finite)
    scaler.update()
    return torch.where(finite, loss.detach(), torch.full_like(loss.detach(), math.nan))


def _poison_gradients(optimizer: torch.optim.Optimizer, finite: torch.Tensor) -> None:
    """Make one gradient NaN when ``finite`` is false (added on the device, no synchronisation)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is not None:
                param.grad.add_(torch.where(finite, 0.0, math.nan).to(param.grad.dtype))
                return


def step_if(optimizer: torch.optim.Optimizer, finite: torch.Tensor) -> None:
    """``optimizer.step()`` when ``finite`` (a 0-d bool tensor) is true. A fused optimiser skips on the device
    through its ``found_inf`` input (the one the gradient scaler uses); any other one needs the flag on the host."""
    if all(group.get("fused") for group in optimizer.param_groups):
        optimizer.found_inf = (~finite).float()  # type: ignore[attr-defined]
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf  # type: ignore[attr-defined]
    elif bool(finite):
        optimizer.step()


def to_device_batch(planned: PlannedBatch, image: np.ndarray, mask: np.ndarray, device: torch.device,
                    augmentation: AugmentationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A sampled batch on ``device``, augmented with its planned seed; meant for the sampler's prefetch threads.

    On a GPU the batch is pinned first, so that the copy is truly asynchronous, and the augmentation's random numbers
    (drawn on the CPU, for identical results on every device) cost the training loop nothing.
    """
    image_t, mask_t = torch.from_numpy(image), torch.from_numpy(mask)
    generator = torch.Generator().manual_seed(planned.augment_seed)
    if device.type != "cuda":
        return augment_batch(image_t.to(device), mask_t.to(device).float(), augmentation, generator)
    with torch.cuda.device(device):  # a new thread would otherwise pin and launch on cuda:0
        image_t = image_t.pin_memory().to(device, non_blocking=True)
        mask_t = mask_t.pin_memory().to(device, non_blocking=True).float()
        return augment_batch(image_t, mask_t, augmentation, generator)


class _Run:
    """One fold's training state; methods in the order a run uses them."""

    def __init__(self, config: TrainConfig, data: str | Path, out: str | Path, fold: int,
                 progress: ProgressCallback | None, cancel: CancelToken | None, device_name: str, resume: bool,
                 cache_dir: str | Path | None, show_progress: bool, command: str | None) -> None:
        config.validate()
        self.config, self.data, self.out, self.fold = config, Path(data), Path(out), int(fold)
        self.progress, self.cancel, self.resume = progress, cancel, resume
        self.show_progress, self.command = show_progress, command
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.out / "cache"
        self.dir = fold_dir(out, fold)
        self.info, self.device = distributed.setup(device_name)
        self.history = History()
        self.best_dice, self.start_epoch = -math.inf, 0
        self.best_epoch: int | None = None
        self.stopped_early = False
        self.weight_average = WeightAverage()
        self.initial_weights: dict[str, Any] | None = None
        self._log_handler: logging.Handler | None = None

    # ------------------------------------------------------------------------------------------------ set-up
    def prepare(self) -> None:
        """Splits, preprocessing cache, network, optimiser, scheduler, sampler; then the checkpoint if resuming."""
        c, info = self.config, self.info
        if not 0 <= self.fold < c.num_folds:
            raise StrokeSegError(f"fold must be between 0 and {c.num_folds - 1}, got {self.fold}")
        checkpoint_path = self.dir / "checkpoint.pt"
        resuming = self.resume and checkpoint_path.is_file()
        if c.init_from and not resuming:  # a wrong starting model is refused before minutes of preprocessing
            check_initial_weights(c)
        if checkpoint_path.is_file() and not self.resume:  # every rank checks, so all stop together
            raise StrokeSegError("this fold already has a checkpoint; pass --resume to continue it, or choose "
                                 "another output folder", self.dir)
        if info.is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            if not checkpoint_path.is_file():  # leftovers of a run killed before its first checkpoint
                for stale in ("best.pt", "DONE"):
                    (self.dir / stale).unlink(missing_ok=True)
            self._log_handler = logging.FileHandler(self.dir / "train.log", encoding="utf-8")
            self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            log.addHandler(self._log_handler)
        cases = load_training_cases(self.data)
        by_id = {case.case_id: case for case in cases}
        if info.is_main:
            load_or_create_splits(self.out / "splits.json", sorted(by_id), c.num_folds, c.split_seed)
        distributed.barrier(info)
        split = load_or_create_splits(self.out / "splits.json", sorted(by_id), c.num_folds, c.split_seed)[self.fold]
        ordered = [by_id[i] for i in split["train"]] + [by_id[i] for i in split["val"]]
        if info.is_main:
            log.info("fold %d: %d training and %d validation cases from %s", self.fold, len(split["train"]),
                     len(split["val"]), self.data)
            build_cache(ordered, self.cache_dir, c.preprocess, c.cache_dtype, self.progress, self.cancel)
        distributed.barrier(info)
        cached = build_cache(ordered, self.cache_dir, c.preprocess, c.cache_dtype, build=False)
        self.train_cases: list[CachedCase] = cached[:len(split["train"])]
        self.val_cases: list[CachedCase] = cached[len(split["train"]):]

        seed_everything(c.seed, c.deterministic, self.device)
        self.network = AttentionUNet3D(training_network_config(c)).to(self.device)
        self.model: torch.nn.Module = self.network
        if info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.network, device_ids=ids)
        # Fused on the GPU: one kernel for all weights, and a skipped step (non-finite loss) costs no synchronisation.
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=c.optim.learning_rate,
                                           weight_decay=c.optim.weight_decay,
                                           fused=True if self.device.type == "cuda" else None)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=c.optim.plateau_factor, patience=c.optim.plateau_patience,
            min_lr=c.optim.min_learning_rate) if c.optim.scheduler == "plateau" else None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=uses_grad_scaler(self.device, c.amp))
        self.loss_fn = DeepSupervisionLoss(SegmentationLoss(c.loss))
        self.sampler = PatchSampler(self.train_cases, c.patch_size, c.batch_size, c.foreground_fraction, c.seed,
                                    info.rank, info.world_size, c.foreground_sampling)
        if resuming:
            self._load(checkpoint_path)
        else:
            if self.resume and info.is_main:
                log.info("no checkpoint in %s; starting from scratch", self.dir)
            if c.init_from:  # every rank loads the same file, so DDP starts from identical weights
                self.initial_weights = load_initial_weights(self.network, c)
        if info.is_main:  # after the resume check, so a refused configuration is never recorded as the run's
            write_config(c, self.dir / "config.json")

    def _load(self, path: Path) -> None:
        state = load_checkpoint(path, map_location="cpu")  # RNG states must stay CPU tensors; the rest is moved
        diffs = _config_differences(state["config"], self.config.to_dict())
        if diffs:
            raise StrokeSegError("cannot resume with a different configuration (" + "; ".join(diffs) + ")", path)
        if state["world_size"] != self.info.world_size:
            raise StrokeSegError(f"checkpoint was written by {state['world_size']} process(es), this run has "
                                 f"{self.info.world_size}; the patch stream would differ", path)
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"] and self.scaler.is_enabled():  # empty when written without fp16 (CPU, bf16)
            self.scaler.load_state_dict(state["scaler"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        restore_rng_state(state["rng"])
        self.history = History(state["history"])
        self.start_epoch = int(state["epoch"])
        self.best_dice, self.best_epoch = float(state["best_dice"]), state["best_epoch"]
        self.stopped_early = bool(state["stopped_early"])
        self.weight_average = WeightAverage.from_state(state.get("weight_average"))
        self.initial_weights = state.get("initial_weights")  # where a fine-tuning run started, for the export
        if self.info.is_main:
            log.info("resumed %s after epoch %d (best Dice %.4f at epoch %s)", path, self.start_epoch,
                     self.best_dice, self.best_epoch)

    # ------------------------------------------------------------------------------------------------ epochs
    def _set_poly_lr(self, epoch: int) -> None:
        c = self.config.optim
        lr = c.learning_rate * (1.0 - epoch / self.config.epochs) ** c.poly_exponent
        for group in self.optimizer.param_groups:
            group["lr"] = max(lr, c.min_learning_rate)

    def _augment(self, planned: PlannedBatch, image: np.ndarray, mask: np.ndarray
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        return to_device_batch(planned, image, mask, self.device, self.config.augmentation)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch of patches; returns the mean loss over processes and the number of skipped (non-finite) steps.

        Losses are summed on the device and read once at the end of the epoch (a progress bar reads them every
        ``_BAR_EVERY`` steps).
        """
        c = self.config
        self.model.train()
        plan = self.sampler.plan_epoch(c.iterations_per_epoch)
        bar = None
        if self.show_progress and self.info.is_main:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(plan), desc=f"epoch {epoch + 1}/{c.epochs}", leave=False, unit="it")
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        steps = torch.zeros((), dtype=torch.int64, device=self.device)
        batches = self.sampler.iterate(plan, c.prefetch_batches, transform=self._augment)
        for it, (_planned, image, mask) in enumerate(batches):
            check_cancel(self.cancel)
            loss = train_step(self.model, self.optimizer, self.scaler, self.loss_fn, image, mask, c, self.device,
                              self.info)
            finite = torch.isfinite(loss)
            total += torch.where(finite, loss.double(), 0.0)
            steps += finite
            report(self.progress, "Training", (epoch + (it + 1) / len(plan)) / c.epochs)
            if bar is not None:
                bar.update(1)
                if (it + 1) % _BAR_EVERY == 0 or it + 1 == len(plan):
                    bar.set_postfix(loss=f"{float(total) / max(int(steps), 1):.4f}")
        if bar is not None:
            bar.close()
        total_value, finite_steps = float(total), int(steps)  # the epoch's one synchronisation
        mean = distributed.all_reduce_mean(total_value / max(finite_steps, 1), self.info, self.device)
        return {"train_loss": mean, "nonfinite_steps": len(plan) - finite_steps}

    def validate_epoch(self, progress: ProgressCallback | None = None, stage: str = "Validating"
                       ) -> tuple[dict[str, float], ValidationResult]:
        """Score the held-out fold in native space, each process a share of the cases; every process receives all
        rows and the same numbers. The predictions stay with the process that made them (see ``_gather_predictions``).
        """
        info = self.info
        mine = self.val_cases[info.rank::info.world_size]
        if progress is not None:
            report(progress, stage, 0.0)
        local = validate(self.network, mine, self.config, self.device, progress if info.is_main else None,
                         cancel=self.cancel, keep_predictions=True)
        predictions, local.predictions = local.predictions, {}
        result = ValidationResult.merged(distributed.all_gather(local, info), [c.case_id for c in self.val_cases])
        result.predictions = predictions
        return result.history_columns(), result

    def _gather_predictions(self, result: ValidationResult) -> None:
        """Every process's predictions into rank 0's ``result`` (only for the epochs whose report is written)."""
        parts = distributed.all_gather(result.predictions, self.info)
        result.predictions = {k: v for part in parts for k, v in part.items()}

    def _write_validation(self, result: ValidationResult, epoch: int) -> None:
        """The best epoch's predictions and report, in the format of ``strokeseg evaluate``."""
        val_dir = self.dir / "validation"
        result.write_predictions(val_dir / "predictions")
        write_metrics_report(result.rows, val_dir, extra={"fold": self.fold, "best_epoch": epoch,
                                                          "pred_dir": str(val_dir / "predictions"),
                                                          "gt_root": str(self.data)})

    def run(self) -> TrainResult:
        c = self.config
        epoch = self.start_epoch
        while epoch < c.epochs and not self.stopped_early:
            started = time.perf_counter()
            if c.optim.scheduler == "poly":
                self._set_poly_lr(epoch)
            lr = self.optimizer.param_groups[0]["lr"]
            row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **self.train_epoch(epoch)}
            train_seconds = time.perf_counter() - started
            if c.average_last_epochs and epoch + 1 > c.epochs - c.average_last_epochs:
                self.weight_average.update(self.network.state_dict())
                if epoch + 1 == c.epochs:  # the last validation, the checkpoint and the export see the average
                    self.network.load_state_dict(self.weight_average.averaged(self.network.state_dict()))
            if (epoch + 1) % c.validate_every == 0 or epoch + 1 == c.epochs:
                columns, validation = self.validate_epoch()
                row.update(columns)
                dice = row["val_dice"]
                if self.scheduler is not None and math.isfinite(dice):
                    self.scheduler.step(dice)
                if math.isfinite(dice) and dice > self.best_dice:
                    self.best_dice, self.best_epoch = dice, epoch + 1
                    self._gather_predictions(validation)
                    if self.info.is_main:
                        self._write_validation(validation, epoch + 1)
                        save_checkpoint(self.dir / "best.pt", {"model": self.network.state_dict(),
                                                               "epoch": epoch + 1, "val": dict(row)})
            elapsed = time.perf_counter() - started
            patches = c.iterations_per_epoch * c.batch_size * self.info.world_size
            row.update({"best_val_dice": self.best_dice if self.best_epoch else float("nan"),
                        "epoch_seconds": elapsed, "patches_per_second": patches / train_seconds})
            self.history.append(row)
            epoch += 1
            if self.best_epoch is not None and epoch - self.best_epoch >= c.early_stopping_patience:
                self.stopped_early = True
            if self.info.is_main:
                self._save(epoch)
                log.info(_epoch_line(row, c.epochs, self.best_dice, self.best_epoch))
                if self.stopped_early:
                    log.info("early stopping: no better validation Dice for %d epochs", c.early_stopping_patience)
            distributed.barrier(self.info)
        return self.finish()

    def _save(self, epoch: int) -> None:
        self.history.save(self.dir)
        save_checkpoint(self.dir / "checkpoint.pt", {
            "epoch": epoch, "fold": self.fold, "world_size": self.info.world_size,
            "model": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "sampler": self.sampler.state_dict(), "rng": capture_rng_state(), "history": self.history.rows,
            "best_dice": self.best_dice, "best_epoch": self.best_epoch, "stopped_early": self.stopped_early,
            "weight_average": self.weight_average.state(), "config": self.config.to_dict(),
            "initial_weights": self.initial_weights,
        })

    # ------------------------------------------------------------------------------------------------ the end
    def finish(self) -> TrainResult:
        """Rank 0 exports the best weights, with the report written when their epoch was validated.

        Every process loads the best weights (rank 0 wrote them before the last barrier), so that all can share a
        re-validation when the report is missing.
        """
        result = TrainResult(self.dir, self.best_epoch, self.best_dice, None, self.history,
                             stopped_early=self.stopped_early)
        if self.info.enabled:
            agree = distributed.replicas_agree(self.network, self.info, self.device)
            if self.info.is_main:
                log.log(logging.INFO if agree else logging.ERROR, "DDP: model replicas %s on %d processes",
                        "identical" if agree else "DIFFER", self.info.world_size)
        best_path = self.dir / "best.pt"
        best = load_checkpoint(best_path) if best_path.is_file() else None
        weights = best["model"] if best is not None else self.network.state_dict()
        self.network.load_state_dict(weights)
        validation = self._best_validation(best)
        distributed.barrier(self.info)  # every process has read the report's files before rank 0 writes more
        if self.info.is_main:
            result.validation = validation
            result.model_path = export_model(
                weights, self.config, self.dir / "model.safetensors",
                model_id=f"strokeseg-{self.out.resolve().name}-fold{self.fold}",
                provenance={
                    "data_root": str(self.data.resolve()), "fold": self.fold, "num_folds": self.config.num_folds,
                    "split_seed": self.config.split_seed, "splits_file": str((self.out / "splits.json").resolve()),
                    "train_cases": [case.case_id for case in self.train_cases],
                    "val_cases": [case.case_id for case in self.val_cases],
                    "best_epoch": self.best_epoch, "epochs_run": len(self.history),
                    "validation": {k: result.validation.mean(k) for k in ("dice", "avd_ml", "lesion_f1", "alcd")},
                    "command": self.command or "StrokeSegTrainLib.trainer.train (Python API)",
                    "world_size": self.info.world_size, "device": str(self.device),
                    **({"initial_weights": self.initial_weights} if self.initial_weights else {}),
                },
                description=f"StrokeSeg attention U-Net trained on fold {self.fold} of {self.config.num_folds}")
            write_text_atomic(self.dir / "DONE", f"{result.model_path.name}\n")
            log.info("fold %d done: best validation Dice %.4f at epoch %s; model %s", self.fold, self.best_dice,
                     self.best_epoch, result.model_path)
        distributed.barrier(self.info)
        return result

    def _best_validation(self, best: dict[str, Any] | None) -> ValidationResult:
        """The best epoch's report, written when that epoch was validated; re-validated (shared between processes)
        only when it is missing or belongs to another epoch (a run killed between writing the report and its
        checkpoint). Every process reaches the same decision from the same files."""
        summary_path = self.dir / "validation" / "summary.json"
        if best is not None and best["epoch"] == self.best_epoch and summary_path.is_file():
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            if summary.get("best_epoch") == self.best_epoch:
                rows = read_metrics_csv(self.dir / "validation" / "metrics.csv")
                return ValidationResult(rows=rows, loss=float(best["val"].get("val_loss", float("nan"))))
        epoch = self.best_epoch if best is not None and self.best_epoch is not None else len(self.history)
        _, result = self.validate_epoch(self.progress, "Final validation")
        self._gather_predictions(result)
        if self.info.is_main:
            self._write_validation(result, epoch)
        return result

    def close(self) -> None:
        if self._log_handler is not None:
            log.removeHandler(self._log_handler)
            self._log_handler.close()


def _epoch_line(row: dict[str, Any], epochs: int, best: float, best_epoch: int | None) -> str:
    text = f"epoch {row['epoch']:>4}/{epochs}  loss {row['train_loss']:.4f}"
    if "val_dice" in row:
        text += (f"  val loss {row['val_loss']:.4f}  Dice {row['val_dice']:.4f}  AVD {row['val_avd_ml']:.2f} mL"
                 f"  lesion F1 {row['val_lesion_f1']:.3f}")
    text += (f"  lr {row['lr']:.2e}  {row['epoch_seconds']:.1f} s"
             f" (training {row['patches_per_second']:.1f} patches/s)")
    if best_epoch is not None:
        text += f"  best {best:.4f} @ {best_epoch}"
    return text


def train(config: TrainConfig, data: str | Path, out: str | Path, fold: int = 0,
          progress: ProgressCallback | None = None, cancel: CancelToken | None = None, *, device: str = "auto",
          resume: bool = False, cache_dir: str | Path | None = None, show_progress: bool = False,
          command: str | None = None) -> TrainResult:
    """Train fold ``fold`` of ``data`` (an ISLES root or a CSV) into ``out/fold_<fold>``; see the module docstring.

    ``progress("Training", fraction)`` reports the whole run's progress; ``cancel.is_set()`` is polled every step
    and raises :class:`~StrokeSegLib.common.errors.CancelledError`, leaving the last end-of-epoch checkpoint to resume
    from. Under ``torchrun`` every process calls this and they train one model with DDP.
    """
    initialised_here = not distributed.group_exists()
    run = _Run(config, data, out, fold, progress, cancel, device, resume, cache_dir, show_progress, command)
    try:
        run.prepare()
        return run.run()
    finally:
        run.close()
        if initialised_here:
            distributed.cleanup()


def write_config(config: TrainConfig, path: str | Path) -> Path:
    """Save the effective configuration beside a run (what was actually used, defaults included)."""
    return write_json_atomic(path, config.to_dict())
