"""A training recipe as data: stages of (generate a synthetic data set, train on it), each stage fine-tuning the last.

A recipe is a JSON file (``StrokeSegTrain/Resources/recipes/starter.json`` retrains starter-stage5)::

    {"description": "...",
     "synth_config": "../synth_procedural.json",            # base generator settings (optional)
     "bundle_id": "starter-stage5",                          # id for --bundle (optional)
     "starts_from": "starter-stage5 (recipes/starter.json)", # stage 1 fine-tunes the model --init-from names (optional)
     "stages": [
       {"note": "what this stage is for",                     # free text (optional)
        "synth": {"cases": 120, "seed": 2026, "overrides": {"p_receive_coil": 0}},
        "train": {"config": "../starter_config.json"}},
       {"synth": {"cases": 240, "seed": 2027},
        "train": {"config": "../starter_finetune_config.json", "init_from_previous": true}}]}

File paths are relative to the recipe. ``--init-from MODEL`` starts stage 1 from MODEL's weights; a recipe with
``starts_from`` (e.g. a second ensemble member fine-tuned from the first) refuses to run without it. A stage's
generator settings are its ``synth.config`` file (else the recipe's ``synth_config``, else the defaults) with its
``overrides`` over them: the one way a stage differs from the base; its training settings are likewise its
``train.config`` with ``train.overrides`` merged over it (nested objects key by key).
``run_recipe`` writes ``OUT/synth<N>`` (a ``synth`` tree) and ``OUT/stage<N>`` (a ``train`` run folder) per stage and
``OUT/recipe_plan.json``, the resolved settings of every stage. With ``resume`` a stage whose data set (manifest of
the same seed, cases and settings) or model (the trainer's ``DONE`` marker) is there is skipped, an interrupted
training continues from its checkpoint, and a folder planned with other settings is refused.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from StrokeSegLib.common.atomic import write_json_atomic
from StrokeSegLib.common.errors import StrokeSegError

from .config import TrainConfig, load_config
from .synth.command import build_synth_config
from .synth.dataset import MANIFEST_NAME, read_manifest, write_dataset
from .synth.generator import SynthConfig, check_synth_settings

PLAN_NAME = "recipe_plan.json"
_RECIPE_KEYS = {"description", "synth_config", "bundle_id", "starts_from", "stages"}
_STAGE_KEYS = {"note", "synth", "train"}
_SYNTH_KEYS = {"cases", "seed", "config", "overrides"}
_TRAIN_KEYS = {"config", "overrides", "fold", "init_from_previous"}


@dataclass(frozen=True)
class Stage:
    """One resolved stage: the data set to generate and the training run on it (``number`` counts from 1)."""

    number: int
    cases: int
    seed: int
    synth: SynthConfig
    train: TrainConfig
    fold: int
    init_from_previous: bool

    def plan(self) -> dict[str, Any]:
        """The stage's settings as JSON (what a resumed run must match)."""
        return json.loads(json.dumps({
            "synth": {"cases": self.cases, "seed": self.seed, "config": asdict(self.synth)},
            "train": {"config": self.train.to_dict(), "fold": self.fold,
                      "init_from_previous": self.init_from_previous}}))


@dataclass(frozen=True)
class Recipe:
    path: Path
    description: str
    bundle_id: str | None
    stages: tuple[Stage, ...]
    #: What stage 1 must fine-tune (``--init-from``), in words; None: stage 1 may start from random weights.
    starts_from: str | None = None


def _keys(data: Any, allowed: set[str], required: set[str], where: str, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise StrokeSegError(f"{where} must be a JSON object, not {type(data).__name__}", path)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise StrokeSegError(f"unknown key(s) {unknown} in {where}; known: {sorted(allowed)}", path)
    missing = sorted(required - set(data))
    if missing:
        raise StrokeSegError(f"{where} lacks {missing}", path)
    return data


def _file(value: Any, where: str, path: Path) -> Path:
    """A file named by the recipe (relative to it), which must exist."""
    if not isinstance(value, str) or not value:
        raise StrokeSegError(f"{where} must be a file name, not {value!r}", path)
    target = (path.parent / value).resolve()
    if not target.is_file():
        raise StrokeSegError(f"{where}: file not found: {target}", path)
    return target


def _int(data: dict[str, Any], key: str, where: str, path: Path, minimum: int) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StrokeSegError(f"{where}.{key} must be an integer of at least {minimum}, not {value!r}", path)
    return value


def _synth(data: Any, base: Path | None, where: str, path: Path) -> tuple[int, int, SynthConfig]:
    data = _keys(data, _SYNTH_KEYS, {"cases", "seed"}, where, path)
    config_file = _file(data["config"], f"{where}.config", path) if "config" in data else base
    overrides = data.get("overrides", {})
    if not isinstance(overrides, dict):
        raise StrokeSegError(f"{where}.overrides must be a JSON object of generator settings", path)
    try:
        check_synth_settings(overrides, f"{where}.overrides")
    except ValueError as exc:
        raise StrokeSegError(str(exc), path) from None
    if "volume_range_ml" in overrides:
        overrides = {**overrides, "volume_range_ml": tuple(overrides["volume_range_ml"])}
    try:
        config = build_synth_config(config_file, overrides)
    except StrokeSegError as exc:
        raise StrokeSegError(f"{where}: {exc}", path) from None
    return _int(data, "cases", where, path, 1), _int(data, "seed", where, path, 0), config


def _train(data: Any, number: int, where: str, path: Path) -> tuple[TrainConfig, int, bool]:
    data = _keys(data, _TRAIN_KEYS, {"config"}, where, path)
    config_file = _file(data["config"], f"{where}.config", path)
    overrides = data.get("overrides", {})
    if not isinstance(overrides, dict):
        raise StrokeSegError(f"{where}.overrides must be a JSON object of training settings", path)
    name = f"{where}.config" + (f" with {where}.overrides" if overrides else "")
    try:
        config = load_config(config_file, overrides)
    except StrokeSegError as exc:
        raise StrokeSegError(f"{name}: {exc}" if exc.path is not None else f"{name} ({config_file}): {exc}",
                             path) from None
    fold = _int(data, "fold", where, path, 0) if "fold" in data else 0
    if not fold < config.num_folds:
        raise StrokeSegError(f"{where}.fold must be below the configuration's num_folds ({config.num_folds})", path)
    previous = data.get("init_from_previous", False)
    if not isinstance(previous, bool):
        raise StrokeSegError(f"{where}.init_from_previous must be true or false, not {previous!r}", path)
    if previous and number == 1:
        raise StrokeSegError(f"{where}.init_from_previous: the first stage has no previous stage", path)
    return config, fold, previous


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a whole recipe (every file it names, every setting) before anything runs."""
    path = Path(path).resolve()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StrokeSegError("recipe not found", path) from None
    except (OSError, ValueError) as exc:
        raise StrokeSegError(f"cannot read the recipe: {exc}", path) from None
    data = _keys(data, _RECIPE_KEYS, {"stages"}, "the recipe", path)
    base = _file(data["synth_config"], "synth_config", path) if "synth_config" in data else None
    bundle_id = data.get("bundle_id")
    if bundle_id is not None and (not isinstance(bundle_id, str) or not bundle_id):
        raise StrokeSegError(f"bundle_id must be a model id, not {bundle_id!r}", path)
    starts_from = data.get("starts_from")
    if starts_from is not None and (not isinstance(starts_from, str) or not starts_from):
        raise StrokeSegError(f"starts_from must say which model stage 1 fine-tunes, not {starts_from!r}", path)
    raw = data["stages"]
    if not isinstance(raw, list) or not raw:
        raise StrokeSegError("stages must be a non-empty list", path)
    stages = []
    for number, item in enumerate(raw, start=1):
        where = f"stages[{number - 1}]"
        item = _keys(item, _STAGE_KEYS, {"synth", "train"}, where, path)
        cases, seed, synth = _synth(item["synth"], base, f"{where}.synth", path)
        train, fold, previous = _train(item["train"], number, f"{where}.train", path)
        stages.append(Stage(number, cases, seed, synth, train, fold, previous))
    return Recipe(path, str(data.get("description", "")), bundle_id, tuple(stages), starts_from)


def synth_dir(out: Path, stage: Stage) -> Path:
    return out / f"synth{stage.number}"


def stage_dir(out: Path, stage: Stage) -> Path:
    return out / f"stage{stage.number}"


def model_path(out: Path, stage: Stage) -> Path:
    """The model file stage ``stage`` exports (the trainer's layout)."""
    return stage_dir(out, stage) / f"fold_{stage.fold}" / "model.safetensors"


def _check_plan(recipe: Recipe, out: Path, resume: bool) -> None:
    """Record the plan in a new folder; on resume, refuse a folder planned with other settings."""
    plan_path = out / PLAN_NAME
    plan: dict[str, Any] = {"recipe": str(recipe.path), "stages": [stage.plan() for stage in recipe.stages]}
    if plan_path.is_file():
        if not resume:
            raise StrokeSegError("this folder already holds a recipe run; pass --resume to continue it, or choose "
                                 "another output folder", out)
        old = json.loads(plan_path.read_text(encoding="utf-8"))["stages"]
        for stage in recipe.stages:
            index = stage.number - 1
            if index < len(old) and old[index] != plan["stages"][index]:
                part = next(k for k in ("synth", "train") if old[index][k] != plan["stages"][index][k])
                raise StrokeSegError(f"stage {stage.number} was run with other {part} settings than {recipe.path} "
                                     f"gives now ({plan_path}); use another output folder", out)
    elif not resume and (any(out.glob("synth*")) or any(out.glob("stage*"))):
        raise StrokeSegError("this folder holds stage folders; pass --resume to continue them (each is checked "
                             "against the recipe), or choose another output folder", out)
    write_json_atomic(plan_path, plan)


def _synth_done(folder: Path, stage: Stage) -> bool:
    """Whether ``folder`` holds this stage's finished data set; a different one there is refused."""
    if not (folder / MANIFEST_NAME).is_file():
        return False
    manifest = read_manifest(folder)
    wanted = stage.plan()["synth"]
    found = {"cases": len(manifest.get("cases", [])), "seed": manifest.get("seed"), "config": manifest.get("config")}
    if found != wanted:
        raise StrokeSegError(f"holds a synthetic data set other than stage {stage.number}'s (seed {found['seed']}, "
                             f"{found['cases']} cases); remove it or use another output folder", folder)
    return True


def _trained(fold: Path, config: TrainConfig, stage: Stage) -> bool:
    """Whether ``fold`` holds this stage's finished training (the trainer's ``DONE`` marker and model); one trained
    with another configuration is refused (where it started from is not compared: a folder may have moved)."""
    if not ((fold / "DONE").is_file() and (fold / "model.safetensors").is_file()):
        return False
    used_path = fold / "config.json"
    used = json.loads(used_path.read_text(encoding="utf-8")) if used_path.is_file() else None
    wanted = json.loads(json.dumps(config.to_dict()))
    if used is None or {**used, "init_from": None} != {**wanted, "init_from": None}:
        differing = sorted(k for k in wanted if (used or {}).get(k) != wanted[k] and k != "init_from")
        raise StrokeSegError(f"was trained with another configuration than stage {stage.number}'s (differs in "
                             f"{differing}); remove it or use another output folder", fold)
    return True


def run_recipe(recipe: Recipe, out: str | Path, *, until_stage: int | None = None, resume: bool = False,
               workers: int = 1, device: str = "auto", show_progress: bool = True, command: str | None = None,
               say: Callable[[str], None] | None = None, init_from: str | None = None) -> Path:
    """Run the recipe's stages 1..``until_stage`` (all by default) into ``out``, stage 1 fine-tuned from ``init_from``
    (a model file or installed id) when given; returns the last stage's model."""
    from .trainer import train

    say = say or (lambda text: print(f"recipe: {text}", file=sys.stderr, flush=True))
    count = len(recipe.stages)
    last = count if until_stage is None else until_stage
    if not 1 <= last <= count:
        raise StrokeSegError(f"--until-stage must be between 1 and {count} (the recipe's stages), not {last}",
                             recipe.path)
    if recipe.starts_from and not init_from:
        raise StrokeSegError(f"this recipe fine-tunes {recipe.starts_from}: name that model with --init-from",
                             recipe.path)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _check_plan(recipe, out, resume)
    for stage in recipe.stages[:last]:
        head = f"stage {stage.number}/{count}"
        data = synth_dir(out, stage)
        if _synth_done(data, stage):
            say(f"{head}: data set already generated ({data}), skipped")
        else:
            say(f"{head}: generating {stage.cases} cases (seed {stage.seed}) -> {data}")
            write_dataset(data, stage.cases, stage.seed, workers, stage.synth)
        config = stage.train
        if stage.init_from_previous:
            config = config.with_overrides(init_from=str(model_path(out, recipe.stages[stage.number - 2])))
        elif stage.number == 1 and init_from:
            config = config.with_overrides(init_from=init_from)
        model = model_path(out, stage)
        if _trained(model.parent, config, stage):
            say(f"{head}: already trained ({model}), skipped")
            continue
        start = f"from {config.init_from} " if config.init_from else ""
        say(f"{head}: training fold {stage.fold} {start}-> {stage_dir(out, stage)}")
        result = train(config, data, stage_dir(out, stage), stage.fold, device=device, resume=resume,
                       show_progress=show_progress, command=f"{command or 'run_recipe'} (stage {stage.number})")
        if result.model_path is None:
            raise StrokeSegError(f"stage {stage.number} exported no model", stage_dir(out, stage))
        say(f"{head}: model {result.model_path} (best validation Dice {result.best_dice:.4f})")
    final = model_path(out, recipe.stages[last - 1])
    say(f"done: stages 1-{last} of {count}; the resulting model is {final}")
    return final


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``recipe``."""
    p = subparsers.add_parser(
        "recipe", help="run a training recipe: stages of generated data and training, each fine-tuning the last",
        description="Runs the stages of a recipe file (e.g. StrokeSegTrain/Resources/recipes/starter.json): "
                    "OUT/synth<N> is stage N's generated data set, OUT/stage<N> its training run. Ends by naming "
                    "the resulting model file.")
    p.add_argument("recipe", type=Path, help="recipe file (JSON)")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--until-stage", type=int, default=None, metavar="N", help="stop after stage N (default: all)")
    p.add_argument("--resume", action="store_true",
                   help="continue a run in OUT: finished stages are skipped, an interrupted training continues")
    p.add_argument("--workers", type=int, default=1, help="processes generating data in parallel (default 1)")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu (default: auto)")
    p.add_argument("--init-from", default=None, metavar="MODEL",
                   help="stage 1 fine-tunes this model file or installed model id (required by a recipe with "
                        "starts_from)")
    p.add_argument("--bundle", action="store_true",
                   help="after the last stage, install its model under the recipe's bundle_id (as `bundle` does)")
    p.add_argument("--bundle-dest", type=Path, default=None, help="folder for --bundle (default: StrokeSegLib/models)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, only the stage and per-epoch lines")
    p.set_defaults(handler=run_recipe_command)


def run_recipe_command(args: argparse.Namespace) -> int:
    """Load and check the recipe, run it, bundle the result when asked."""
    import logging
    import shlex

    recipe = load_recipe(args.recipe)
    if args.workers < 1:
        raise StrokeSegError("--workers must be at least 1")
    if args.bundle and recipe.bundle_id is None:
        raise StrokeSegError("--bundle needs the recipe's bundle_id", recipe.path)
    if args.bundle and args.until_stage is not None and args.until_stage != len(recipe.stages):
        raise StrokeSegError("--bundle installs the model of the whole recipe; leave out --until-stage")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    command = " ".join(shlex.quote(a) for a in ["strokeseg-train", *sys.argv[1:]])
    model = run_recipe(recipe, args.out, until_stage=args.until_stage, resume=args.resume, workers=args.workers,
                       device=args.device, show_progress=not args.quiet, command=command, init_from=args.init_from)
    if args.bundle:
        from .bundle import bundle_model

        summary = model.parent / "validation" / "summary.json"
        try:
            evaluation = json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StrokeSegError(f"cannot read the last stage's validation summary: {exc}", summary) from exc
        assert recipe.bundle_id is not None  # checked before the run
        target = bundle_model(model, recipe.bundle_id, args.bundle_dest, {"evaluation": evaluation})
        print(f"recipe: bundled {recipe.bundle_id} -> {target}", file=sys.stderr)
    print(model)
    return 0
