"""SegmentOptions is the one carrier of inference options: it writes and reads its own command line, and every layer
(Python API, Slicer logic, background command, CLI) passes it through unchanged."""
from __future__ import annotations

import dataclasses
import json

import pytest

from StrokeSegLib.cli import build_parser
from StrokeSegLib.engine.options import SegmentOptions
from StrokeSegLib.scene.logic import build_segment_command

CASES = [
    SegmentOptions(),
    SegmentOptions(device="cpu", tta=True, threshold=0.25, min_lesion_mm3=5.0),
    SegmentOptions(overlap=0.75, batch_size=3, register=False, force=True),
    SegmentOptions(register=True, min_lesion_mm3=0.0, threshold=0.1 + 0.2),  # a float that repr must keep exactly
]


def _parse(argv: list[str], command: str = "segment") -> SegmentOptions:
    head = ["segment", "--dwi", "d.nii.gz", "--adc", "a.nii.gz", "--out", "m.nii.gz"] if command == "segment" \
        else ["batch", "root", "--out", "o"]
    args = build_parser().parse_args(head + argv)
    return SegmentOptions.from_args(args)


@pytest.mark.parametrize("options", CASES)
@pytest.mark.parametrize("command", ["segment", "batch"])
def test_the_command_line_reads_back_what_the_options_write(options: SegmentOptions, command: str) -> None:
    assert _parse(options.to_argv(), command) == options


def test_defaults_write_no_arguments_and_none_means_the_models_value() -> None:
    assert SegmentOptions().to_argv() == []
    parsed = _parse([])
    assert parsed.threshold is None and parsed.min_lesion_mm3 is None and parsed.register is None


@pytest.mark.parametrize("options", CASES)
def test_the_child_command_carries_the_options_unchanged(options: SegmentOptions) -> None:
    command = build_segment_command("py", "d.nrrd", "a.nrrd", "m.nrrd", "r.json", model="x.safetensors",
                                    options=options, cancel_file="c")
    assert command[:4] == ["py", "-m", "StrokeSegLib.cli", "segment"]
    args = build_parser().parse_args(command[3:])
    assert SegmentOptions.from_args(args) == options
    assert args.model == "x.safetensors" and args.cancel_file == "c" and args.progress == "machine"


def test_every_field_has_one_command_line_argument() -> None:
    help_text = build_parser()._subparsers._group_actions[0].choices["segment"].format_help()
    for f in dataclasses.fields(SegmentOptions):
        assert "--" + f.name.replace("_", "-") in help_text


def test_json_round_trip_and_unknown_keys_refused() -> None:
    options = CASES[1]
    assert SegmentOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options
    with pytest.raises(Exception, match="treshold"):
        SegmentOptions.from_dict({"treshold": 0.5})


def test_keyword_form_replaces_fields_and_refuses_unknown_names() -> None:
    base = SegmentOptions(device="cpu", tta=True)
    assert SegmentOptions.build(base, threshold=0.3) == SegmentOptions(device="cpu", tta=True, threshold=0.3)
    assert base == SegmentOptions(device="cpu", tta=True)  # not modified in place
    with pytest.raises(TypeError, match="treshold"):
        SegmentOptions.build(treshold=0.3)
    with pytest.warns(DeprecationWarning, match="min_lesion_mm3"):
        assert SegmentOptions.build(minLesionMm3=4.0).min_lesion_mm3 == 4.0


@pytest.mark.parametrize("argv", [["--threshold", "1"], ["--min-lesion-mm3", "-1"], ["--overlap", "0.95"],
                                  ["--batch-size", "0"], ["--register", "maybe"], ["--device", "tpu"]])
def test_unusable_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2
