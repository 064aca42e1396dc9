"""StrokeSegLib's packages are layers: each module imports only from its own layer and the layers before it.

The order is defined here once (ARCHITECTURE.md describes it): common < io < preprocessing < engine < evaluation <
apps < cli < scene < panels. Every import counts, at module level or inside a function. Further rules: only
``StrokeSegLib.scene`` imports Slicer (``slicer``, ``vtk``, ``PyTorchUtils``), and only inside functions; no library
module imports Qt; StrokeSegLib never imports the training library or the Slicer module glue; StrokeSegTrainLib uses
the stages of StrokeSegLib (common to apps), never its cli, scene or panels; the generator (``synth/``) uses nothing
of the trainer.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "StrokeSeg" / "StrokeSegLib"
TRAIN_LIB = ROOT / "StrokeSegTrain" / "StrokeSegTrainLib"

LAYERS = ("common", "io", "preprocessing", "engine", "evaluation", "apps", "cli", "scene", "panels")
STAGES = LAYERS[: LAYERS.index("apps") + 1]  # what the training library may use
SLICER_ROOTS = {"slicer", "vtk", "vtkmodules", "PyTorchUtils"}
QT_ROOTS = {"qt", "ctk", "PythonQt", "SegmentEditorEffects"}
GLUE_ROOTS = {"StrokeSeg", "SegmentEditorStrokeSeg", "SegmentEditorStrokeSegLib", "StrokeSegTrain"}


@dataclass(frozen=True)
class Import:
    path: Path
    where: str  # file:line, the file relative to the folder holding the library
    module: str  # absolute dotted name
    top_level: bool


def module_name(path: Path, lib: Path) -> str:
    parts = [lib.name, *path.relative_to(lib).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, lib: Path) -> list[Import]:
    """Every import of a file, relative ones resolved to absolute names (`from . import x` names x itself)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    top = {id(node) for node in tree.body}
    name = module_name(path, lib)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    rel = path.relative_to(lib.parent)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(path, f"{rel}:{node.lineno}", alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            targets = [module]
            if node.level and not node.module:  # `from . import x, y`: the modules x and y
                targets = [f"{module}.{alias.name}" for alias in node.names]
            out += [Import(path, f"{rel}:{node.lineno}", target, id(node) in top) for target in targets]
    return out


def layer_of_module(dotted: str) -> str | None:
    """The layer of a StrokeSegLib module name; None for the package itself."""
    parts = dotted.split(".")
    if len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def layer_of_file(path: Path, lib: Path) -> str:
    parts = path.relative_to(lib).parts
    if parts == ("cli.py",):
        return "cli"
    if parts == ("__init__.py",):
        return "__init__"
    assert parts[0] in LAYERS, f"{path}: not in a layer package; add it to one (see ARCHITECTURE.md)"
    return parts[0]


def layer_violations(lib: Path) -> list[str]:
    """file:line of every StrokeSegLib import that reaches a later layer (or breaks the package-level rules)."""
    found = []
    for path in sorted(lib.rglob("*.py")):
        own = layer_of_file(path, lib)
        for imp in imports(path, lib):
            root = imp.module.split(".")[0]
            if root in ("StrokeSegTrainLib", *GLUE_ROOTS):
                found.append(f"{imp.where}: imports {imp.module}; StrokeSegLib never imports training or glue")
            if root != "StrokeSegLib":
                continue
            target = layer_of_module(imp.module)
            if own == "__init__":
                # StrokeSegLib.StrokeSegLogic is resolved on first access: lazily, so the package imports nothing
                if target is not None and imp.top_level:
                    found.append(f"{imp.where}: the package's __init__ imports {imp.module} at module level")
                continue
            if target is None:
                if imp.module != "StrokeSegLib":
                    found.append(f"{imp.where}: imports {imp.module}, which is in no layer")
                continue
            if LAYERS.index(target) > LAYERS.index(own):
                found.append(f"{imp.where}: {own} imports {imp.module} ({target} comes after {own})")
    return found


def test_every_strokeseglib_module_imports_only_its_own_and_earlier_layers() -> None:
    assert not layer_violations(LIB), "\n".join(layer_violations(LIB))


def test_the_layer_check_reports_file_and_line(tmp_path: Path) -> None:
    lib = tmp_path / "StrokeSegLib"
    for folder in ("engine", "evaluation"):
        (lib / folder).mkdir(parents=True)
        (lib / folder / "__init__.py").write_text("")
    (lib / "__init__.py").write_text("def __getattr__(name):\n    from .scene import logic\n    return logic\n")
    (lib / "evaluation" / "metrics.py").write_text("from ..engine import postprocess\n")
    (lib / "engine" / "postprocess.py").write_text('"""Doc."""\nimport numpy\n\nfrom ..evaluation.metrics import x\n')
    (lib / "engine" / "sliding.py").write_text(
        "def f():\n    from . import postprocess\n    from StrokeSegTrainLib import a\n")
    assert layer_violations(lib) == [
        "StrokeSegLib/engine/postprocess.py:4: engine imports StrokeSegLib.evaluation.metrics "
        "(evaluation comes after engine)",
        "StrokeSegLib/engine/sliding.py:3: imports StrokeSegTrainLib; StrokeSegLib never imports training or glue",
    ]


def test_only_scene_imports_slicer_and_only_inside_functions_and_no_library_imports_qt() -> None:
    seen = 0
    for lib in (LIB, TRAIN_LIB):
        for path in sorted(lib.rglob("*.py")):
            assert "slicer.app" not in path.read_text(encoding="utf-8"), path
            for imp in imports(path, lib):
                root = imp.module.split(".")[0]
                assert root not in QT_ROOTS, f"{imp.where}: imports {imp.module}"
                if root in SLICER_ROOTS:
                    assert path.parent == LIB / "scene", f"{imp.where}: imports {imp.module} outside scene/"
                    assert not imp.top_level, f"{imp.where}: imports {imp.module} at module level"
                    seen += 1
    assert seen >= 3  # the rule really saw the adapter's and the dependency installer's lazy imports


def test_training_uses_the_stages_of_strokeseglib_and_the_generator_stands_alone() -> None:
    found = []
    for path in sorted(TRAIN_LIB.rglob("*.py")):
        in_synth = path.relative_to(TRAIN_LIB).parts[0] == "synth"
        for imp in imports(path, TRAIN_LIB):
            parts = imp.module.split(".")
            if parts[0] == "StrokeSegLib" and layer_of_module(imp.module) not in STAGES:
                found.append(f"{imp.where}: imports {imp.module}; training uses only {', '.join(STAGES)}")
            if parts[0] in GLUE_ROOTS:
                found.append(f"{imp.where}: imports the Slicer module glue {imp.module}")
            if in_synth and parts[0] == "StrokeSegTrainLib" and parts[1:2] != ["synth"]:
                found.append(f"{imp.where}: the generator imports the trainer's {imp.module}")
    assert not found, "\n".join(found)
