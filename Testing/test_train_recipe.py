"""Training recipes (``strokeseg-train recipe``) and the generator's ``--p-*`` flags, generated from SynthConfig."""
from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
from train_fixtures import single_thread, tiny_config  # noqa: F401

from StrokeSegLib.common.errors import StrokeSegError
from StrokeSegLib.engine.model_file import file_sha256, load_model, read_metadata
from StrokeSegLib.engine.model_registry import bundled_dir
from StrokeSegTrainLib.cli import build_parser
from StrokeSegTrainLib.cli import main as train_main
from StrokeSegTrainLib.config import load_config
from StrokeSegTrainLib.recipe import load_recipe, run_recipe
from StrokeSegTrainLib.synth.command import build_synth_config, share_overrides
from StrokeSegTrainLib.synth.dataset import write_dataset
from StrokeSegTrainLib.synth.generator import SynthConfig, share_fields
from StrokeSegTrainLib.synth.template_anatomy import nilearn_data_folder

RESOURCES = Path(__file__).resolve().parents[1] / "StrokeSegTrain" / "Resources"
STARTER = RESOURCES / "recipes" / "starter.json"
TEMPLATE_MEMBER = RESOURCES / "recipes" / "starter_template_member.json"
PROCEDURAL = str(RESOURCES / "synth_procedural.json")

# The five stages of the bundled starter model as the Makefile ran them before the recipe existed: synth flags,
# training configuration, and whether the stage was fine-tuned from the one before.
MAKEFILE_STAGES = (
    (["--cases", "120", "--seed", "2026", "--p-receive-coil", "0", "--p-bright-cortex", "0",
      "--p-eddy-misregistration", "0"], "starter_config.json", False),
    (["--cases", "240", "--seed", "2027", "--p-bright-cortex", "0", "--p-eddy-misregistration", "0"],
     "starter_finetune_config.json", True),
    (["--cases", "360", "--seed", "2028", "--p-eddy-misregistration", "0"], "starter_finetune_config.json", True),
    (["--cases", "360", "--seed", "2029"], "starter_finetune_config.json", True),
    (["--cases", "360", "--seed", "2032", "--p-symmetric-cortex", "0.5"], "starter_finetune_config.json", True),
)


def _synth_args(extra: list[str]):
    return build_parser().parse_args(["synth", "--config", PROCEDURAL, "--out", "unused", *extra])


# ------------------------------------------------------------------------------------------------ --p-* flags
def test_every_share_has_a_flag_whose_help_and_default_come_from_synthconfig() -> None:
    shares = {f.name for f in fields(SynthConfig) if f.name.startswith("p_")}
    assert shares == {f.name for f in share_fields()} and len(shares) >= 8
    synth = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "synth")[1]
    flags = {action.dest: action for action in synth._actions if action.option_strings}
    for f in share_fields():
        action = flags[f.name]
        assert action.option_strings == ["--" + f.name.replace("_", "-")]
        assert action.default is None  # a flag left out must not override the config file
        assert action.help == f"{f.metadata['help']} (default {f.default})"
        assert "default" not in f.metadata["help"] and not re.search(r"\b0?\.\d", f.metadata["help"])


def test_a_flag_overrides_the_config_file_and_an_absent_flag_does_not(tmp_path: Path) -> None:
    config_file = tmp_path / "synth.json"
    config_file.write_text(json.dumps({"p_receive_coil": 0.2, "p_stripped": 0.9, "p_real_lesions": 0.0}))
    args = build_parser().parse_args(["synth", "--out", "x", "--cases", "1", "--seed", "1", "--config",
                                      str(config_file), "--p-receive-coil", "0.7", "--p-adc-other-grid", "0"])
    config = build_synth_config(args.config, share_overrides(args))
    assert (config.p_receive_coil, config.p_stripped, config.p_adc_other_grid) == (0.7, 0.9, 0.0)
    assert config.p_bright_cortex == SynthConfig().p_bright_cortex


def test_a_share_outside_zero_to_one_is_refused_naming_the_flag(capsys) -> None:
    assert train_main(["synth", "--out", "x", "--cases", "1", "--seed", "1", "--p-bright-cortex", "1.5"]) == 2
    assert "--p-bright-cortex must be between 0 and 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ the starter recipe
def test_starter_recipe_is_the_makefile_s_five_stages() -> None:
    recipe = load_recipe(STARTER)
    assert len(recipe.stages) == len(MAKEFILE_STAGES) and recipe.bundle_id == "starter-stage5"
    for stage, (flags, train_config, fine_tuned) in zip(recipe.stages, MAKEFILE_STAGES):
        args = _synth_args(flags)
        assert (stage.cases, stage.seed) == (args.cases, args.seed)
        assert stage.synth == build_synth_config(args.config, share_overrides(args)), stage.number
        assert stage.train == load_config(RESOURCES / train_config) and stage.fold == 0
        assert stage.init_from_previous == fine_tuned


@pytest.mark.slow
def test_starter_stage_3_generates_the_same_files_as_the_makefile_line(tmp_path: Path) -> None:
    """Two cases of stage 3, once from the recipe and once from the command line the Makefile ran: byte for byte."""
    stage = load_recipe(STARTER).stages[2]
    write_dataset(tmp_path / "recipe", 2, stage.seed, 1, stage.synth)
    flags = ["--cases", "2", "--seed", "2028", "--p-eddy-misregistration", "0", "--quiet"]
    assert train_main(["synth", "--config", PROCEDURAL, "--out", str(tmp_path / "cli"), *flags]) == 0
    written = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*") if p.is_file())
    assert len(written) == 7  # 2 x (DWI, ADC, mask) + manifest
    for name in written:
        assert (tmp_path / "recipe" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name


@pytest.mark.skipif(nilearn_data_folder() is None, reason="nilearn (which ships the ICBM 2009a maps) not installed")
def test_template_member_recipe_fine_tunes_stage5_on_the_generator_s_default_brain() -> None:
    """The second starter member: one stage from the first member (required), on template-brain cases."""
    recipe = load_recipe(TEMPLATE_MEMBER)
    assert recipe.bundle_id == "starter-v3-template" and recipe.starts_from and len(recipe.stages) == 1
    stage = recipe.stages[0]
    assert (stage.cases, stage.seed, stage.init_from_previous) == (300, 2040, False)
    assert stage.synth == SynthConfig(p_symmetric_cortex=0.5)
    assert stage.synth.p_template_anatomy == 1.0 and stage.synth.p_real_lesions == 0.75
    assert stage.train == load_config(RESOURCES / "starter_finetune_config.json").with_overrides(epochs=40)
    assert stage.train.network == load_recipe(STARTER).stages[-1].train.network  # so it can start from stage 5
    with pytest.raises(StrokeSegError, match="name that model with --init-from"):
        run_recipe(recipe, "unused-out")


@pytest.mark.skipif(nilearn_data_folder() is None, reason="the second member's recipe needs nilearn's ICBM maps")
def test_make_starter_model_rebuilds_the_shipped_ensemble_s_members_in_order() -> None:
    """The Makefile's starter-model target: each recipe bundles its member, the second starts from the first's file,
    and the ensemble averages the members the shipped starter holds, in its order."""
    makefile = (RESOURCES.parents[1] / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    target = makefile.split("\nstarter-model:")[1].split("\n\n")[0]
    dest = re.search(r"^STARTER_MEMBERS\s*:=\s*(\S+)", makefile, re.M).group(1)
    runs = re.findall(r"recipe (\S+\.json) (.*)", target)
    recipes = [load_recipe(RESOURCES.parents[1] / path) for path, _ in runs]
    members = [f"$(STARTER_MEMBERS)/{r.bundle_id}.safetensors" for r in recipes]
    for (_, flags), recipe in zip(runs, recipes):
        assert re.search(r"--bundle\s+--bundle-dest\s+\$\(STARTER_MEMBERS\)", flags) and "--resume" in flags
        assert ("--init-from" in flags) == bool(recipe.starts_from)
    assert re.search(rf"--init-from\s+{re.escape(members[0])}\s", runs[1][1] + " ")
    ensemble = re.search(r"models ensemble (.*?)\s+--out\s+(\S+)\s+--name\s+(\S+)", target)
    assert ensemble.group(1).split() == members and ensemble.group(3) == "strokeseg-starter"
    assert dest.startswith("output/") and ensemble.group(2).startswith("output/")  # never over the shipped model
    shipped = read_metadata(bundled_dir() / "strokeseg-starter.safetensors")
    assert [m["model_id"] for m in shipped.members] == [r.bundle_id for r in recipes]


# ------------------------------------------------------------------------------------------------ a tiny recipe
def _write_recipe(folder: Path, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    train = tiny_config(epochs=1, iterations_per_epoch=1, num_folds=3).to_dict()
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "synth.json").write_text(json.dumps({"p_real_lesions": 0.0, "p_adc_other_grid": 0.0, "fine_mm": 2.0,
                                                   "p_stripped": 1.0, "p_no_lesion": 0.0}))
    recipe = {"description": "two tiny stages", "synth_config": "synth.json", "bundle_id": "tiny-recipe",
              "stages": [{"synth": {"cases": 3, "seed": 7, "overrides": {"p_receive_coil": 0}},
                          "train": {"config": "train.json"}},
                         {"synth": {"cases": 3, "seed": 8}, "train": {"config": "train.json",
                                                                      "init_from_previous": True}}]}
    recipe.update(changes)
    path = folder / "recipe.json"
    path.write_text(json.dumps(recipe))
    return path


@pytest.mark.slow
def test_tiny_recipe_runs_fine_tunes_stage_2_from_stage_1_and_resumes_by_skipping(tmp_path: Path, capsys) -> None:
    recipe = _write_recipe(tmp_path / "recipe")
    out = tmp_path / "out"
    common = [str(recipe), "--out", str(out), "--device", "cpu", "--quiet"]
    assert train_main(["recipe", *common, "--bundle", "--bundle-dest", str(tmp_path / "models")]) == 0
    captured = capsys.readouterr()
    first, second = out / "stage1" / "fold_0" / "model.safetensors", out / "stage2" / "fold_0" / "model.safetensors"
    assert captured.out.strip().splitlines()[-1] == str(second)
    assert f"the resulting model is {second}" in captured.err
    manifest = json.loads((out / "synth1" / "synth_manifest.json").read_text())
    assert manifest["seed"] == 7 and len(manifest["cases"]) == 3 and manifest["config"]["p_receive_coil"] == 0.0
    assert json.loads((out / "synth2" / "synth_manifest.json").read_text())["config"]["p_receive_coil"] == 0.5
    init = load_model(second).metadata.provenance["initial_weights"]
    assert init["sha256"] == file_sha256(first) and Path(init["path"]) == first
    assert "initial_weights" not in load_model(first).metadata.provenance
    bundled = load_model(tmp_path / "models" / "tiny-recipe.safetensors")
    assert bundled.metadata.provenance["bundled_from_sha256"] == file_sha256(second)

    stamps = {p: p.stat().st_mtime_ns for p in (first, second, out / "synth1" / "synth_manifest.json")}
    assert train_main(["recipe", *common]) == 2  # an existing run is not overwritten without --resume
    assert "pass --resume" in capsys.readouterr().err
    assert train_main(["recipe", *common, "--resume"]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped") == 4 and "generating" not in err and "training fold" not in err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # a recipe that fine-tunes another's result: refused without --init-from, started from that model with it
    follow = _write_recipe(tmp_path / "follow", starts_from="the tiny recipe's model", stages=[
        {"synth": {"cases": 3, "seed": 7}, "train": {"config": "train.json"}}])
    follow_args = [str(follow), "--out", str(tmp_path / "follow-out"), "--device", "cpu", "--quiet"]
    assert train_main(["recipe", *follow_args]) == 2
    assert "fine-tunes the tiny recipe's model: name that model with --init-from" in capsys.readouterr().err
    assert not (tmp_path / "follow-out").exists()
    assert train_main(["recipe", *follow_args, "--init-from", str(second)]) == 0
    assert f"training fold 0 from {second}" in capsys.readouterr().err
    followed = load_model(tmp_path / "follow-out" / "stage1" / "fold_0" / "model.safetensors")
    assert followed.metadata.provenance["initial_weights"]["sha256"] == file_sha256(second)

    changed = _write_recipe(tmp_path / "changed", stages=[
        {"synth": {"cases": 3, "seed": 9}, "train": {"config": "train.json"}}])
    assert train_main(["recipe", str(changed), "--out", str(out), "--resume", "--device", "cpu"]) == 2
    assert "stage 1 was run with other synth settings" in capsys.readouterr().err


def test_until_stage_stops_after_that_stage(tmp_path: Path, capsys) -> None:
    recipe = _write_recipe(tmp_path / "recipe")
    assert train_main(["recipe", str(recipe), "--out", str(tmp_path / "out"), "--until-stage", "3"]) == 2
    assert "--until-stage must be between 1 and 2" in capsys.readouterr().err
    assert not (tmp_path / "out" / "synth1").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"stage": [{"synth": {}, "train": {}}]}, r"unknown key\(s\) \['stage'\] in the recipe"),
    ({"synth_config": "nowhere.json"}, r"synth_config: file not found: .*nowhere\.json"),
    ({"stages": [{"synth": {"cases": 3, "seed": 7, "overrides": {"p_recieve_coil": 0}},
                  "train": {"config": "train.json"}}]},
     r"unknown generator settings \['p_recieve_coil'\] in stages\[0\]\.synth\.overrides"),
    ({"stages": [{"synth": {"cases": 3, "seed": 7}, "train": {"config": "missing.json"}}]},
     r"stages\[0\]\.train\.config: file not found: .*missing\.json"),
    ({"stages": [{"synth": {"cases": 3, "seed": 7}, "train": {"config": "train.json", "epochs": 2}}]},
     r"unknown key\(s\) \['epochs'\] in stages\[0\]\.train"),
    ({"stages": [{"synth": {"cases": 3, "seed": 7}, "train": {"config": "train.json", "init_from_previous": True}}]},
     r"the first stage has no previous stage"),
    ({"starts_from": ""}, r"starts_from must say which model stage 1 fine-tunes"),
    ({"stages": [{"synth": {"cases": 3, "seed": 7}, "train": {"config": "train.json", "overrides": [1]}}]},
     r"stages\[0\]\.train\.overrides must be a JSON object"),
    ({"stages": [{"synth": {"cases": 3, "seed": 7}, "train": {"config": "train.json", "overrides": {"epoch": 2}}}]},
     r"stages\[0\]\.train\.config with stages\[0\]\.train\.overrides .*Unknown key\(s\) in config: epoch"),
    ({"stages": [{"synth": {"cases": 0, "seed": 7}, "train": {"config": "train.json"}}]},
     r"stages\[0\]\.synth\.cases must be an integer of at least 1"),
])
def test_a_broken_recipe_is_refused_naming_the_file_and_the_key(tmp_path: Path, change: dict, message: str) -> None:
    recipe = _write_recipe(tmp_path, **change)
    with pytest.raises(StrokeSegError, match=message) as caught:
        load_recipe(recipe)
    assert caught.value.path == recipe


def test_train_overrides_merge_nested_settings_key_by_key(tmp_path: Path) -> None:
    recipe = _write_recipe(tmp_path, stages=[{"synth": {"cases": 3, "seed": 7}, "train": {
        "config": "train.json", "overrides": {"epochs": 5, "loss": {"small_lesion_voxels": 64, "bce_weight": 1.0}}}}])
    base = load_config(tmp_path / "train.json")
    config = load_recipe(recipe).stages[0].train
    assert config.epochs == 5 and base.epochs == 1
    assert (config.loss.small_lesion_voxels, config.loss.bce_weight) == (64, 1.0)
    assert config.loss.alpha == base.loss.alpha and config.network == base.network  # the rest as the file says
    assert config.with_overrides(epochs=1, loss=base.loss) == base


def test_a_training_configuration_with_an_unknown_key_is_refused_naming_both_files(tmp_path: Path) -> None:
    recipe = _write_recipe(tmp_path)
    (tmp_path / "train.json").write_text(json.dumps({"epoch": 3}))
    with pytest.raises(StrokeSegError, match=r"stages\[0\]\.train\.config \(.*train\.json\): Unknown key\(s\)"):
        load_recipe(recipe)
