"""The extension as Slicer will build and load it: CMake lists, .ui names, icons, catalog entry, import rules.

None of this needs Slicer: CMake lists are evaluated here (set, file(GLOB ...) and the module macros), the panel code is
checked against its .ui by AST, and StrokeSegLib is imported in a child process where ``slicer`` cannot be imported.
"""
from __future__ import annotations

import ast
import glob
import json
import py_compile
import re
import subprocess
import sys
import textwrap
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "StrokeSeg" / "StrokeSegLib"
TRAIN_LIB = ROOT / "StrokeSegTrain" / "StrokeSegTrainLib"
SLICER_FILES = [
    ROOT / "StrokeSeg" / "StrokeSeg.py",
    ROOT / "StrokeSeg" / "SegmentEditorStrokeSeg.py",
    ROOT / "StrokeSeg" / "SegmentEditorStrokeSegLib" / "__init__.py",
    ROOT / "StrokeSeg" / "SegmentEditorStrokeSegLib" / "SegmentEditorEffect.py",
    ROOT / "StrokeSegTrain" / "StrokeSegTrain.py",
]


# ---- a small CMake evaluator: enough for set(), file(GLOB[_RECURSE] ... RELATIVE ...) and the module macros ----


def cmake_commands(path: Path) -> list[tuple[str, list[str]]]:
    """``(command, arguments)`` in order; quoted arguments keep their text (quotes removed), comments dropped."""
    text = path.read_text()
    commands, i = [], 0
    while True:
        match = re.compile(r"(?m)^\s*(\w+)\s*\(").search(text, i)
        if match is None:
            return commands
        args, token, depth, quoted, i = [], None, 1, False, match.end()
        while depth:
            c = text[i]
            if quoted:
                if c == '"':
                    quoted = False
                else:
                    token += c
            elif c == '"':
                quoted, token = True, token or ""
            elif c == "#":
                i = text.index("\n", i)
                continue
            elif c in "()":
                depth += 1 if c == "(" else -1
                if depth:
                    token = (token or "") + c
            elif c.isspace():
                if token is not None:
                    args.append(token)
                token = None
            else:
                token = (token or "") + c
            i += 1
        if token is not None:
            args.append(token)
        commands.append((match.group(1).lower(), args))


def expand(token: str, variables: dict[str, list[str]]) -> list[str]:
    match = re.fullmatch(r"\$\{(\w+)\}", token)
    if match:
        return list(variables.get(match.group(1), []))
    return [re.sub(r"\$\{(\w+)\}", lambda m: " ".join(variables.get(m.group(1), [])), token)]


def evaluate_module_cmake(folder: Path) -> list[dict[str, list[str]]]:
    """The SCRIPTS and RESOURCES of each slicerMacroBuildScriptedModule call, as paths relative to ``folder``."""
    variables: dict[str, list[str]] = {"CMAKE_CURRENT_SOURCE_DIR": [str(folder)]}
    modules = []
    for name, args in cmake_commands(folder / "CMakeLists.txt"):
        if name == "set":
            variables[args[0]] = [v for token in args[1:] for v in expand(token, variables)]
        elif name == "file" and args[0] in ("GLOB", "GLOB_RECURSE"):
            var, rest = args[1], args[2:]
            assert rest[0] == "RELATIVE", "globs must be RELATIVE to the module folder"
            base = Path(expand(rest[1], variables)[0])
            found = []
            for pattern in rest[2:]:
                pattern = expand(pattern, variables)[0]
                if args[0] == "GLOB_RECURSE":
                    head, tail = pattern.rsplit("/", 1)
                    pattern = f"{head}/**/{tail}"
                found += [str(Path(p).relative_to(base)) for p in glob.glob(pattern, recursive=True)]
            variables[var] = sorted(set(found))
        elif name == "slicermacrobuildscriptedmodule":
            sections: dict[str, list[str]] = {}
            key = None
            for token in args:
                if token in ("NAME", "SCRIPTS", "RESOURCES"):
                    key = token
                    sections[key] = []
                elif token == "WITH_GENERIC_TESTS":
                    key = None
                elif key is not None:
                    sections[key] += expand(token, variables)
            modules.append(sections)
    return modules


@pytest.fixture(scope="module")
def cmake_modules() -> dict[str, dict[str, list[str]]]:
    out = {}
    for folder in (ROOT / "StrokeSeg", ROOT / "StrokeSegTrain"):
        for module in evaluate_module_cmake(folder):
            out[module["NAME"][0]] = {**module, "folder": [str(folder)]}
    return out


def test_top_level_cmake_declares_the_extension() -> None:
    text = (ROOT / "CMakeLists.txt").read_text()
    commands = dict((n, a) for n, a in cmake_commands(ROOT / "CMakeLists.txt") if n != "set")
    assert commands["cmake_minimum_required"] == ["VERSION", "3.20.6...3.22.6", "FATAL_ERROR"]  # Slicer 5.10 template
    assert commands["project"] == ["StrokeSeg"]
    settings = {a[0]: " ".join(a[1:]) for n, a in cmake_commands(ROOT / "CMakeLists.txt") if n == "set"}
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert key in settings, key
    assert settings["EXTENSION_CATEGORY"] == "Segmentation"
    assert settings["EXTENSION_DEPENDS"] == "PyTorch"
    assert settings["EXTENSION_HOMEPAGE"] == "https://github.com/strokeseg/SlicerStrokeSeg"
    assert settings["EXTENSION_ICONURL"].endswith("/StrokeSeg.png")
    assert "DWI" in settings["EXTENSION_DESCRIPTION"] and "ADC" in settings["EXTENSION_DESCRIPTION"]
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(StrokeSeg)",
                 "add_subdirectory(StrokeSegTrain)", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
                 "include(${Slicer_EXTENSION_CPACK})"):
        assert line in text, line


def test_modules_are_declared(cmake_modules) -> None:
    assert set(cmake_modules) == {"StrokeSeg", "SegmentEditorStrokeSeg", "StrokeSegTrain"}


def test_every_listed_file_exists(cmake_modules) -> None:
    for name, module in cmake_modules.items():
        folder = Path(module["folder"][0])
        listed = module["SCRIPTS"] + module["RESOURCES"]
        assert listed, name
        missing = [f for f in listed if not (folder / f).is_file()]
        assert not missing, f"{name} lists missing files: {missing}"
        assert f"{name}.py" in module["SCRIPTS"]


def test_every_python_file_and_resource_is_packaged(cmake_modules) -> None:
    strokeseg = cmake_modules["StrokeSeg"]
    effect = cmake_modules["SegmentEditorStrokeSeg"]
    train = cmake_modules["StrokeSegTrain"]

    def rel(paths, base):
        return {str(p.relative_to(base)) for p in paths if "__pycache__" not in p.parts}

    base = ROOT / "StrokeSeg"
    lib_files = rel(LIB.rglob("*.py"), base)
    assert len(lib_files) >= 10 and "StrokeSegLib/scene/mrml.py" in lib_files
    assert lib_files <= set(strokeseg["SCRIPTS"]), lib_files - set(strokeseg["SCRIPTS"])
    models = rel([p for p in (LIB / "models").glob("*") if p.suffix in (".safetensors", ".json", ".sha256")], base)
    assert models <= set(strokeseg["RESOURCES"])
    resources = rel([p for p in (base / "Resources").rglob("*") if p.is_file()], base)
    assert resources <= set(strokeseg["RESOURCES"]), resources - set(strokeseg["RESOURCES"])
    effect_files = rel((base / "SegmentEditorStrokeSegLib").rglob("*"), base)
    assert effect_files == set(effect["SCRIPTS"] + effect["RESOURCES"]) - {"SegmentEditorStrokeSeg.py"}

    tbase = ROOT / "StrokeSegTrain"
    train_files = rel(TRAIN_LIB.rglob("*.py"), tbase)
    assert train_files and train_files <= set(train["SCRIPTS"]), train_files - set(train["SCRIPTS"])
    assert rel([p for p in (tbase / "Resources").rglob("*") if p.is_file()], tbase) <= set(train["RESOURCES"])
    data_files = rel([p for p in TRAIN_LIB.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc", ".md")], tbase)
    assert "StrokeSegTrainLib/synth/data/soop_lesions_mni.npz" in data_files
    assert data_files <= set(train["RESOURCES"]), data_files - set(train["RESOURCES"])


def test_python_unittests_are_registered_for_each_module() -> None:
    for folder, scripts in ((ROOT / "StrokeSeg", ["StrokeSeg.py", "SegmentEditorStrokeSeg.py"]),
                            (ROOT / "StrokeSegTrain", ["StrokeSegTrain.py"])):
        commands = cmake_commands(folder / "CMakeLists.txt")
        registered = [a[1] for n, a in commands if n == "slicer_add_python_unittest"]
        names = {"${MODULE_NAME}.py": f"{folder.name}.py", "${EFFECT_MODULE_NAME}.py": "SegmentEditorStrokeSeg.py"}
        assert sorted(names.get(r, r) for r in registered) == sorted(scripts)
        for script in scripts:
            tree = ast.parse((folder / script).read_text())
            classes = {c.name for c in tree.body if isinstance(c, ast.ClassDef)}
            stem = script[:-3]
            assert {stem, f"{stem}Test"} <= classes


# ---- panel code against its .ui ----


def ui_names(path: Path) -> set[str]:
    return {w.get("name") for w in ET.parse(path).iter("widget")}


def used_ui_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
            names.add(node.attr)
    return names


@pytest.mark.parametrize("module", ["StrokeSeg", "StrokeSegTrain"])
def test_every_widget_the_code_uses_exists_in_the_ui(module: str) -> None:
    folder = ROOT / module
    used = used_ui_names(folder / f"{module}.py")
    declared = ui_names(folder / "Resources" / "UI" / f"{module}.ui")
    assert len(used) >= 8, used
    assert used <= declared, f"missing in {module}.ui: {sorted(used - declared)}"


def test_ui_scene_connections_point_at_existing_widgets() -> None:
    for ui in (ROOT / "StrokeSeg/Resources/UI/StrokeSeg.ui", ROOT / "StrokeSegTrain/Resources/UI/StrokeSegTrain.ui"):
        tree = ET.parse(ui)
        names = ui_names(ui)
        assert tree.find("class").text == ui.stem
        for connection in tree.iter("connection"):
            assert connection.find("sender").text in names and connection.find("receiver").text in names
    ui = ET.parse(ROOT / "StrokeSeg/Resources/UI/StrokeSeg.ui")
    receivers = {c.find("receiver").text for c in ui.iter("connection")}
    assert receivers == {"dwiSelector", "adcSelector", "outputSegmentationSelector"}


@pytest.mark.parametrize("path", SLICER_FILES, ids=lambda p: p.name)
def test_slicer_side_files_compile(path: Path, tmp_path: Path) -> None:
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)


def test_module_metadata_and_effect_name() -> None:
    source = (ROOT / "StrokeSeg" / "StrokeSeg.py").read_text()
    for module in ("StrokeSeg/StrokeSeg.py", "StrokeSegTrain/StrokeSegTrain.py"):  # translatable, as Slicer's own
        assert 'self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]' in (
            ROOT / module).read_text()
    assert "10.1038/s41597-022-01875-5" in source  # ISLES 2022 citation in the acknowledgement
    effect = (ROOT / "StrokeSeg/SegmentEditorStrokeSegLib/SegmentEditorEffect.py").read_text()
    assert 'EFFECT_NAME = "Stroke lesion (AI)"' in effect and "scriptedEffect.name = EFFECT_NAME" in effect
    registrar = (ROOT / "StrokeSeg/SegmentEditorStrokeSeg.py").read_text()
    assert 'slicer.app.connect("startupCompleted()", self.registerEditorEffect)' in registrar
    assert "self.parent.hidden = True" in registrar


def module_level_calls(path: Path) -> set[str]:
    """Names called at import time (outside any function or class body)."""
    tree = ast.parse(path.read_text())
    called = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for node in ast.walk(stmt):
            if isinstance(node, ast.Call):
                func = node.func
                called.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return called


def test_dependencies_are_never_installed_at_import_time() -> None:
    for path in SLICER_FILES:
        assert not module_level_calls(path) & {"ensure_dependencies", "pip_install", "pip_ensure", "installTorch"}
    module = (ROOT / "StrokeSeg/StrokeSeg.py").read_text()
    assert "ensure_dependencies(ask=slicer.util.confirmOkCancelDisplay)" in module


# ---- StrokeSegLib imports where Slicer does not exist (which package may import slicer: test_layer_order.py) ----


BLOCKER = textwrap.dedent(
    """
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"slicer", "vtk", "vtkmodules", "qt", "ctk", "PyTorchUtils"}:
                raise ImportError(f"{name} is blocked in this test")
            return None
    sys.meta_path.insert(0, Block())
    """
)


def test_strokeseglib_imports_where_slicer_does_not_exist() -> None:
    script = BLOCKER + textwrap.dedent(
        """
        import StrokeSegLib
        from StrokeSegLib.scene import dependencies, logic, mrml
        from StrokeSegLib.common.errors import InvalidImageError, StrokeSegError
        assert StrokeSegLib.StrokeSegLogic is logic.StrokeSegLogic
        assert "slicer" not in sys.modules and "vtk" not in sys.modules
        try:
            mrml._slicer()
        except StrokeSegError as error:
            assert "3D Slicer" in str(error)
        else:
            raise AssertionError("mrml._slicer() should explain that Slicer is needed")
        try:
            mrml.volume_node_to_sitk(None)
        except InvalidImageError:
            pass
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


# ---- catalog entry and icons ----


def test_extensions_index_entry() -> None:
    entry = json.loads((ROOT / "Resources" / "StrokeSeg.json").read_text())
    assert entry["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                                       "slicer-extension-catalog-entry-schema-v1")
    assert entry["category"] == "Segmentation"
    assert entry["scm_url"] == "https://github.com/strokeseg/SlicerStrokeSeg"
    assert entry["build_dependencies"] == ["PyTorch"]
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
    assert set(entry) <= allowed
    assert not re.search(r"TODO|example\.com|<[^>]+>", json.dumps(entry))


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"), dtype=float) / 255.0


@pytest.mark.parametrize("path,size", [
    ("StrokeSeg.png", 128),
    ("StrokeSeg/Resources/Icons/StrokeSeg.png", 128),
    ("StrokeSegTrain/Resources/Icons/StrokeSegTrain.png", 128),
    ("StrokeSeg/SegmentEditorStrokeSegLib/SegmentEditorEffect.png", None),
])
def test_icons_are_real_pictures(path: str, size: int | None) -> None:
    pixels = read_png(ROOT / path)
    if size is not None:
        assert pixels.shape[:2] == (size, size)
    opaque = pixels[..., 3] > 0.5
    assert opaque.mean() > 0.5, "mostly transparent"
    colours = {tuple(c) for c in np.round(pixels[opaque][:, :3] * 15).astype(int)}
    assert len(colours) >= 8, "too few colours: a placeholder?"
    assert pixels[opaque][:, :3].std() > 0.1
    # The lesion: a bright warm patch (red and green high, blue lower) covering a visible area.
    warm = (pixels[..., 0] > 0.8) & (pixels[..., 1] > 0.6) & (pixels[..., 2] < 0.6) & opaque
    assert warm.mean() > 0.01


# ---- Sample Data registration ----


@pytest.mark.realdata
def test_sample_data_checksums_match_the_hosted_files(isles_root: Path) -> None:
    import hashlib

    source = (ROOT / "StrokeSeg" / "StrokeSeg.py").read_text()
    sums = re.findall(r'"SHA256:([0-9a-f]{64})"', source)
    names = re.findall(r'"(sub-strokecase0009_ses-0001_(?:dwi|adc)\.nii\.gz)"', source)
    assert len(sums) == 2 and names[:2] == ["sub-strokecase0009_ses-0001_dwi.nii.gz",
                                             "sub-strokecase0009_ses-0001_adc.nii.gz"]
    for name, digest in zip(names[:2], sums):
        path = isles_root / "sub-strokecase0009" / "ses-0001" / "dwi" / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


# ---- dependencies: asked once, torch via PyTorchUtils, Slicer's numpy and SimpleITK pinned ----


def test_requirement_checks() -> None:
    from StrokeSegLib.scene import dependencies as deps

    assert deps.requirement_satisfied("numpy>=1.0")
    assert not deps.requirement_satisfied("numpy>=9999")
    assert not deps.requirement_satisfied("strokeseg-no-such-package")
    assert deps.missing_requirements(["numpy", "strokeseg-no-such-package>=1"]) == ["strokeseg-no-such-package>=1"]
    assert not {r.split(">")[0].lower() for r in deps.REQUIREMENTS} & {"numpy", "simpleitk", "torch"}


def test_constraints_pin_slicers_numpy_and_simpleitk(tmp_path: Path) -> None:
    import importlib.metadata

    from StrokeSegLib.scene import dependencies as deps

    lines = deps.protection_constraints(tmp_path).read_text().split()
    assert f"numpy=={importlib.metadata.version('numpy')}" in lines
    assert f"SimpleITK=={importlib.metadata.version('SimpleITK')}" in lines


@pytest.fixture
def fake_slicer(monkeypatch: pytest.MonkeyPatch):
    """A stand-in ``slicer`` (with or without ``slicer.packaging``) and ``PyTorchUtils`` that record calls."""
    from StrokeSegLib.scene import dependencies as deps

    calls: dict[str, list] = {"pip_ensure": [], "pip_install": [], "installTorch": []}
    installed: set[str] = set()

    def pip_ensure(requirements, constraints=None, prompt_install=True, requester=None, **kw):
        calls["pip_ensure"].append({"requirements": requirements, "constraints": Path(constraints).read_text(),
                                    "prompt_install": prompt_install, "requester": requester})
        installed.update(requirements)

    def pip_install(args):
        calls["pip_install"].append(list(args))
        installed.update(a for a in args if "strokeseg-fake" in a)

    class Logic:
        def installTorch(self, askConfirmation=False, torchVersionRequirement=None, **kw):
            calls["installTorch"].append({"ask": askConfirmation, "version": torchVersionRequirement})
            installed.add("torch")
            return object()

    slicer = types.ModuleType("slicer")
    slicer.__path__ = []
    slicer.util = types.SimpleNamespace(pip_install=pip_install)
    packaging = types.ModuleType("slicer.packaging")
    packaging.pip_ensure = pip_ensure
    monkeypatch.setitem(sys.modules, "slicer", slicer)
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=Logic))
    monkeypatch.setattr(deps, "torch_installed", lambda: "torch" in installed)
    monkeypatch.setattr(deps, "requirement_satisfied", lambda r: r in installed)
    return types.SimpleNamespace(calls=calls, installed=installed, monkeypatch=monkeypatch)


def test_user_who_declines_gets_nothing_installed(fake_slicer) -> None:
    from StrokeSegLib.scene import dependencies as deps

    questions = []
    assert deps.ensure_dependencies(ask=lambda q: questions.append(q) or False,
                                    requirements=["strokeseg-fake>=1"]) is False
    assert len(questions) == 1 and "PyTorch" in questions[0] and "strokeseg-fake>=1" in questions[0]
    assert fake_slicer.calls == {"pip_ensure": [], "pip_install": [], "installTorch": []}


def test_accepting_installs_torch_through_pytorchutils_and_pins_slicers_packages(fake_slicer) -> None:
    from StrokeSegLib.scene import dependencies as deps

    assert deps.ensure_dependencies(ask=lambda q: True, requirements=["strokeseg-fake>=1"]) is True
    assert fake_slicer.calls["installTorch"] == [{"ask": False, "version": deps.TORCH_REQUIREMENT}]
    (call,) = fake_slicer.calls["pip_ensure"]
    assert call["requirements"] == ["strokeseg-fake>=1"] and call["prompt_install"] is False
    assert "numpy==" in call["constraints"] and "SimpleITK==" in call["constraints"]
    # Everything present now: nothing is asked or installed again.
    asked = []
    assert deps.ensure_dependencies(ask=lambda q: asked.append(q) or True, requirements=["strokeseg-fake>=1"])
    assert not asked and len(fake_slicer.calls["pip_ensure"]) == 1


def test_older_slicer_falls_back_to_pip_install_with_constraints(fake_slicer) -> None:
    from StrokeSegLib.scene import dependencies as deps

    fake_slicer.monkeypatch.setitem(sys.modules, "slicer.packaging", None)  # Slicer < 5.12: no slicer.packaging
    fake_slicer.installed.add("torch")
    assert deps.ensure_dependencies(requirements=["strokeseg-fake>=1"])
    (args,) = fake_slicer.calls["pip_install"]
    assert args[0] == "-c" and Path(args[1]).name == "strokeseg-constraints.txt" and args[2:] == ["strokeseg-fake>=1"]


def test_failed_install_is_reported(fake_slicer) -> None:
    from StrokeSegLib.common.errors import StrokeSegError
    from StrokeSegLib.scene import dependencies as deps

    fake_slicer.installed.add("torch")
    fake_slicer.monkeypatch.setattr(deps, "install_packages", lambda reqs: None)  # pip "succeeded" but nothing came
    with pytest.raises(StrokeSegError, match="strokeseg-fake"):
        deps.ensure_dependencies(requirements=["strokeseg-fake>=1"])


def test_missing_pytorch_extension_is_explained(fake_slicer) -> None:
    from StrokeSegLib.common.errors import StrokeSegError
    from StrokeSegLib.scene import dependencies as deps

    fake_slicer.monkeypatch.setitem(sys.modules, "PyTorchUtils", None)
    with pytest.raises(StrokeSegError, match="Extensions Manager"):
        deps.ensure_dependencies(requirements=[])


def test_ui_parameter_names_are_fields_of_the_parameter_node() -> None:
    """Widgets bound by parameterNodeWrapper.connectGui (the .ui property SlicerParameterName) name real fields."""
    tree = ast.parse((ROOT / "StrokeSeg" / "StrokeSeg.py").read_text())
    wrapper = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "StrokeSegParameterNode")
    assert any(getattr(d, "id", None) == "parameterNodeWrapper" for d in wrapper.decorator_list)
    fields = {s.target.id for s in wrapper.body if isinstance(s, ast.AnnAssign)}
    bound = {}
    for widget in ET.parse(ROOT / "StrokeSeg/Resources/UI/StrokeSeg.ui").iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[widget.get("name")] = prop.find("string").text
    assert set(bound) == {"dwiSelector", "adcSelector", "outputSegmentationSelector", "ttaCheckBox",
                          "thresholdSpinBox", "minLesionSpinBox"}
    assert set(bound.values()) <= fields and {"model", "device"} <= fields
