"""``strokeseg-train bundle``: turn a trained model file into a bundled model of the extension.

    strokeseg-train bundle --model RUN/fold_0/model.safetensors --id strokeseg-starter \
        [--card-metrics report/summary.json]

A trained run exports ``strokeseg-<run>-fold<k>``; the extension looks for its default model by id
(``strokeseg-starter``) in ``StrokeSegLib/models/``. Bundling re-saves the same weights under the new id, merges extra
provenance (for example the metrics of an evaluation on held-out data) and writes the checksum sidecar the registry
verifies. The weights are never changed, and the result is loaded back and compared before it is accepted.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from StrokeSegLib.common.atomic import write_text_atomic
from StrokeSegLib.common.errors import StrokeSegError
from StrokeSegLib.engine.model_file import MODEL_SUFFIX, load_model, save_model
from StrokeSegLib.engine.model_registry import bundled_dir, checksum_path


def bundle_model(source: str | Path, model_id: str, dest_dir: str | Path | None = None,
                 extra_provenance: dict | None = None, description: str | None = None) -> Path:
    """Re-save ``source`` as ``dest_dir/<model_id>.safetensors`` with a checksum; returns the new file."""
    loaded = load_model(source)
    meta = dataclasses.replace(
        loaded.metadata,
        model_id=model_id,
        provenance={**loaded.metadata.provenance, **(extra_provenance or {}), "bundled_from_sha256": loaded.sha256},
        description=description if description is not None else loaded.metadata.description,
    )
    target = Path(dest_dir or bundled_dir()) / f"{model_id}{MODEL_SUFFIX}"
    save_model(target, loaded.network, meta)
    check = load_model(target)
    for name, tensor in loaded.network.state_dict().items():
        if not torch.equal(tensor, check.network.state_dict()[name]):
            raise StrokeSegError(f"bundled weights differ from the source in {name}", target)
    write_text_atomic(checksum_path(target), f"{check.sha256}  {target.name}\n")
    return target


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bundle``."""
    p = subparsers.add_parser("bundle", help="install a trained model file as a bundled model under a given id")
    p.add_argument("--model", required=True, type=Path, help="model file exported by a training run")
    p.add_argument("--id", required=True, help="model id, e.g. strokeseg-starter (the default model)")
    p.add_argument("--dest", type=Path, default=None, help="folder (default: StrokeSegLib/models)")
    p.add_argument("--provenance", type=Path, default=None,
                   help="JSON file merged into the model's provenance (e.g. held-out evaluation summary)")
    p.add_argument("--description", default=None)
    p.set_defaults(handler=run_bundle)


def run_bundle(args: argparse.Namespace) -> int:
    extra = None
    if args.provenance is not None:
        try:
            extra = {"evaluation": json.loads(Path(args.provenance).read_text(encoding="utf-8"))}
        except (OSError, json.JSONDecodeError) as exc:
            raise StrokeSegError(f"cannot read provenance JSON: {exc}", args.provenance) from exc
    target = bundle_model(args.model, args.id, args.dest, extra, args.description)
    print(f"bundled {args.id} -> {target}")
    return 0
