"""The inference options (:class:`SegmentOptions`): the one carrier of a user's choices from the Slicer panel, the
Python API and the command line to :func:`~StrokeSegLib.engine.segmentation.segment_images`.

Each option is declared once, as a field with its command-line help; the same declaration writes the ``strokeseg``
arguments (:meth:`SegmentOptions.add_arguments`), reads them back (:meth:`SegmentOptions.from_args`), turns options
into arguments for a child process (:meth:`SegmentOptions.to_argv`) and into JSON (:meth:`SegmentOptions.to_dict`).
Adding an option means adding a field here (and a widget, if the panel should show it). ``None`` always means "the
model file's value". No torch and no Qt here: the Slicer process builds the child's command with it.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..common.errors import StrokeSegError

#: Largest sliding-window overlap the command line accepts (1 would never advance the window).
MAX_OVERLAP = 0.9
#: Devices the command line offers ("auto": CUDA, then MPS, then the CPU); the Python API also takes "cuda:N".
DEVICES = ("auto", "cuda", "mps", "cpu")
#: Spellings of keyword arguments that earlier scripts used (the Slicer module's camelCase), mapped to field names.
ALIASES = {"minLesionMm3": "min_lesion_mm3"}


def _number(text: str, low: float, high: float, low_open: bool, high_open: bool, what: str) -> float:
    """Parse a finite number in a range, or raise argparse's type error (usage message, exit status 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not math.isfinite(value) or not (above and below):
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise argparse.ArgumentTypeError(f"{what} must lie in {lo}{low:g}, {high:g}{hi}, got {text}")
    return value


def parse_threshold(text: str) -> float:
    return _number(text, 0.0, 1.0, True, True, "threshold")


def parse_overlap(text: str) -> float:
    return _number(text, 0.0, MAX_OVERLAP, False, False, "overlap")


def parse_min_lesion(text: str) -> float:
    return _number(text, 0.0, math.inf, False, True, "min-lesion-mm3")


def parse_batch_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch size must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"batch size must be at least 1, got {value}")
    return value


def _option(default: Any, help: str, *, parse: Callable[[str], Any] | None = None,
            choices: Sequence[str] | None = None, words: Mapping[str, Any] | None = None) -> Any:
    """A field plus how it reads on the command line. ``words`` maps command-line words to values (a tri-state);
    a ``False``-default bool becomes a flag."""
    return field(default=default, metadata={"help": help, "parse": parse, "choices": choices, "words": words})


@dataclass
class SegmentOptions:
    """User choices for one segmentation; ``None`` means "what the model file says"."""

    device: str = _option("auto", "", choices=DEVICES)
    tta: bool = _option(False, "mirror test-time augmentation (8x slower, slightly better)")
    threshold: float | None = _option(None, "probability threshold in (0, 1) (default: the model's)",
                                      parse=parse_threshold)
    min_lesion_mm3: float | None = _option(None, "drop smaller lesions (default: the model's)",
                                           parse=parse_min_lesion)
    overlap: float = _option(0.5, f"sliding-window overlap, 0..{MAX_OVERLAP}", parse=parse_overlap)
    batch_size: int | None = _option(None, "windows per forward pass", parse=parse_batch_size)
    register: bool | None = _option(None, "rigidly register ADC to DWI before resampling",
                                    words={"auto": None, "yes": True, "no": False})
    #: Segment even when :mod:`.input_checks` find the input implausible; the findings go into the report.
    force: bool = _option(False, "segment even when the input checks find the input implausible (DWI that looks like "
                                 "a b=0 or ADC image, another patient's ADC, ...); the findings are recorded in the "
                                 "report")

    def check(self) -> None:
        """Raise :class:`StrokeSegError` for a value no run can use, before any work (not after the prediction)."""
        if self.threshold is not None and not (math.isfinite(self.threshold) and 0.0 < self.threshold < 1.0):
            raise StrokeSegError(f"threshold must lie strictly between 0 and 1, got {self.threshold!r}")
        if self.min_lesion_mm3 is not None and not (math.isfinite(self.min_lesion_mm3) and self.min_lesion_mm3 >= 0):
            raise StrokeSegError(f"min_lesion_mm3 must be a number >= 0, got {self.min_lesion_mm3!r}")
        if not (math.isfinite(self.overlap) and 0.0 <= self.overlap < 1.0):
            raise StrokeSegError(f"overlap must lie in [0, 1), got {self.overlap!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise StrokeSegError(f"batch_size must be at least 1, got {self.batch_size!r}")

    # ---- building ----

    @classmethod
    def build(cls, options: SegmentOptions | None = None, **choices: Any) -> SegmentOptions:
        """``options`` (or the defaults) with the named fields replaced: the keyword form of the Python entry points
        (``StrokeSegLogic.process(..., device="cpu", threshold=0.4)``). An unknown name is a TypeError."""
        values: dict[str, Any] = {}
        for name, value in choices.items():
            if name in ALIASES:
                warnings.warn(f"{name}= is deprecated; use {ALIASES[name]}=", DeprecationWarning, stacklevel=3)
                name = ALIASES[name]
            if name not in _FIELDS:
                raise TypeError(f"unknown segmentation option {name!r}; options are {', '.join(_FIELDS)}")
            values[name] = value
        return dataclasses.replace(options or cls(), **values)

    # ---- command line ----

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add one ``--name`` argument per field (underscores become hyphens)."""
        for f in dataclasses.fields(SegmentOptions):
            meta, flag = f.metadata, _flag(f.name)
            help_text = meta["help"] or None
            if meta["words"] is not None:
                words = meta["words"]
                default = next(word for word, value in words.items() if value == f.default)
                parser.add_argument(flag, default=default, choices=list(words), help=help_text)
            elif f.default is False:
                parser.add_argument(flag, action="store_true", help=help_text)
            else:
                parser.add_argument(flag, type=meta["parse"], default=f.default, choices=meta["choices"],
                                    help=help_text)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SegmentOptions:
        """The options parsed by a parser that :meth:`add_arguments` set up."""
        values = {}
        for f in dataclasses.fields(cls):
            value = getattr(args, f.name)
            words = f.metadata["words"]
            values[f.name] = words[value] if words is not None else value
        return cls(**values)

    def to_argv(self) -> list[str]:
        """The command-line arguments that :meth:`from_args` reads back as these options (defaults left out)."""
        argv: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            words = f.metadata["words"]
            if words is not None:
                argv += [_flag(f.name), next(word for word, v in words.items() if v is value)]
            elif isinstance(value, bool):
                argv.append(_flag(f.name))
            else:
                argv += [_flag(f.name), repr(float(value)) if isinstance(value, float) else str(value)]
        return argv

    # ---- JSON ----

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentOptions:
        """Inverse of :meth:`to_dict`; unknown keys are refused (a typo would otherwise do nothing)."""
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise StrokeSegError(f"unknown segmentation options: {', '.join(unknown)}")
        options = cls(**data)
        options.check()
        return options


_FIELDS = tuple(f.name for f in dataclasses.fields(SegmentOptions))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
