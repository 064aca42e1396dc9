"""Install what StrokeSeg needs into Slicer's Python on first use, after asking; never at import time.

torch comes only through the PyTorch extension's ``PyTorchUtils`` (it picks the CUDA build that fits the driver);
the small pure-Python packages through ``slicer.packaging.pip_ensure`` (Slicer 5.12+) or ``slicer.util.pip_install``.
numpy and SimpleITK belong to Slicer and are pinned to their installed versions during every install, so a dependency
can never replace them. ``slicer`` and ``PyTorchUtils`` are imported inside functions only.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ..common.errors import StrokeSegError

TORCH_REQUIREMENT = ">=2.2"
# What segmentation needs beyond Slicer's own numpy and SimpleITK (matplotlib is only for evaluation plots).
REQUIREMENTS: tuple[str, ...] = ("safetensors>=0.4", "scipy>=1.10", "tqdm>=4.60")
PROTECTED = ("numpy", "SimpleITK")  # Slicer's own builds: pinned, never upgraded or replaced

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:>=\s*([0-9][0-9A-Za-z.]*))?\s*$")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def requirement_satisfied(requirement: str) -> bool:
    """True when ``name`` or ``name>=version`` is installed (the only forms StrokeSeg uses)."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"unsupported requirement {requirement!r}")
    name, minimum = match.groups()
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return minimum is None or _version_tuple(installed) >= _version_tuple(minimum)


def missing_requirements(requirements: Sequence[str] = REQUIREMENTS) -> list[str]:
    """The requirements that are not installed (or too old)."""
    return [r for r in requirements if not requirement_satisfied(r)]


def torch_installed() -> bool:
    """torch importable (checked without importing it: importing a broken install can lock its files)."""
    return importlib.util.find_spec("torch") is not None


def protection_constraints(folder: str | Path | None = None) -> Path:
    """A pip constraints file pinning Slicer's numpy and SimpleITK to the versions installed now."""
    lines = []
    for name in PROTECTED:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    folder = Path(tempfile.mkdtemp(prefix="strokeseg-pip-")) if folder is None else Path(folder)
    path = folder / "strokeseg-constraints.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def describe_missing(missing: Sequence[str], need_torch: bool) -> str:
    """The question shown to the user before anything is downloaded."""
    parts = []
    if need_torch:
        parts.append("PyTorch (through the PyTorch extension; it picks the CPU or CUDA build for this computer)")
    parts += list(missing)
    return (
        "StrokeSeg needs these Python packages, which are not installed yet:\n  - "
        + "\n  - ".join(parts)
        + "\nThey will be downloaded and installed into Slicer's Python (this can take a few minutes). Continue?"
    )


def install_torch() -> None:
    """Install torch via PyTorchUtils; explain how to get the PyTorch extension when it is missing."""
    try:
        import PyTorchUtils
    except ImportError as error:
        raise StrokeSegError(
            "StrokeSeg needs the 'PyTorch' extension: install it from the Extensions Manager, restart Slicer, "
            "and press Apply again."
        ) from error
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT
    )
    if torch is None:
        raise StrokeSegError("PyTorch was not installed; StrokeSeg cannot run without it.")


def install_packages(requirements: Sequence[str]) -> None:
    """pip-install with Slicer's numpy and SimpleITK pinned (pip_ensure on Slicer 5.12+, pip_install before)."""
    import slicer

    constraints = protection_constraints()
    try:
        import slicer.packaging as slicer_packaging
    except ImportError:
        slicer_packaging = None
    if slicer_packaging is not None and hasattr(slicer_packaging, "pip_ensure"):
        # Already asked by ensure_dependencies; do not ask a second time.
        slicer_packaging.pip_ensure(
            list(requirements), constraints=constraints, prompt_install=False, requester="StrokeSeg"
        )
    else:
        slicer.util.pip_install(["-c", str(constraints), *requirements])


def ensure_dependencies(
    ask: Callable[[str], bool] | None = None,
    requirements: Sequence[str] = REQUIREMENTS,
) -> bool:
    """Make torch and ``requirements`` importable; True when ready, False when the user said no.

    ``ask(message) -> bool`` is shown once before installing (e.g. ``slicer.util.confirmOkCancelDisplay``); None
    installs without asking (scripts, tests). Raises :class:`StrokeSegError` when an install did not work.
    """
    missing = missing_requirements(requirements)
    need_torch = not torch_installed()
    if not missing and not need_torch:
        return True
    if ask is not None and not ask(describe_missing(missing, need_torch)):
        return False
    if need_torch:
        install_torch()
    if missing:
        install_packages(missing)
    importlib.invalidate_caches()
    still = missing_requirements(requirements) + ([] if torch_installed() else ["torch"])
    if still:
        raise StrokeSegError(f"Could not install {', '.join(still)}; see the Python console for pip's messages.")
    return True
