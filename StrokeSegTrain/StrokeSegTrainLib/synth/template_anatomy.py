"""Template anatomy: the ICBM 152 2009a average brain, deformed per case, as an alternative to the procedural brain.

The procedural brain (``anatomy``) is written as implicit shapes. This one reads the grey and white matter
probability maps of the ICBM 152 2009a nonlinear symmetric template (1 mm; they ship inside the ``nilearn`` package,
or any folder holding the same two files) at each voxel's MNI position. The position comes from the same per-case
chain as the procedural brain: anatomical point -> the case's smooth deformation and head scale
(``model_coordinates``) -> the fixed model-to-MNI affine (``real_lesions``), so a real lesion mask lands where it was
drawn on the same template family. The template averages young adults: a per-case atrophy level thins tissue at every
CSF border (wider sulci and ventricles). The brain's closed outline, read as a signed distance, gives depth below the
surface and carries the skull and scalp of unstripped scans (``extracranial``).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from .anatomy import (
    REGION_BRAINSTEM,
    REGION_CEREBELLUM,
    REGION_CEREBRUM,
    REGION_DEEP_GREY,
    REGION_NONE,
    Anatomy,
    AnatomyFields,
    HeadParams,
    model_coordinates,
)
from .fields import AxisGrid, ramp
from .real_lesions import MODEL_TO_MNI_MATRIX, model_to_mni

#: The two probability maps read, as named in nilearn's ``datasets/data`` folder.
TEMPLATE_FILES = {"gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
                  "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"}
#: Radius (mm) of the closing that bridges sulci when the brain's outer outline is made.
OUTLINE_CLOSING_MM = 3
#: At atrophy 1, tissue partial volumes below this level turn to CSF (borders thin by about a voxel).
ATROPHY_CUT = 0.35
#: Deep grey nuclei (caudate, lentiform, thalamus): grey matter inside this MNI box (RAS mm, |x|, y, z) and deeper
#: than ``DEEP_GREY_DEPTH_MM`` below the outline; the insula (|x| > 34) and the cingulate (z > 24) stay cortex.
DEEP_GREY_BOX = ((0.0, 33.0), (-38.0, 28.0), (-14.0, 24.0))
DEEP_GREY_DEPTH_MM = 10.0
#: Where the ICBM 2009a brain's tissue centre lies (LPS mm) and how far another template's may lie from it: maps in
#: another space would put every library lesion in the wrong place.
TISSUE_CENTRE_LPS_MM = (0.0, 21.9, 9.7)
TISSUE_CENTRE_TOLERANCE_MM = 25.0
#: Mean linear scale of the model-to-MNI affine: template millimetres per model-frame millimetre.
_MNI_PER_MODEL_MM = float(abs(np.linalg.det(MODEL_TO_MNI_MATRIX)) ** (1.0 / 3.0))


@dataclass(frozen=True)
class TemplateBrain:
    """Grey and white matter fractions and the outline's signed distance (mm, negative inside) on the template grid,
    with the map from LPS millimetres to its (x, y, z) indices."""

    gm: np.ndarray
    wm: np.ndarray
    outline_mm: np.ndarray
    origin: np.ndarray
    to_index: np.ndarray  # 3x3: index (x, y, z) = to_index @ (point - origin)
    folder: str

    def sample(self, volume: np.ndarray, mx: np.ndarray, my: np.ndarray, mz: np.ndarray, outside: float) -> np.ndarray:
        """``volume`` read (trilinear) at LPS points; ``outside`` beyond the template's box."""
        d = (mx - np.float32(self.origin[0]), my - np.float32(self.origin[1]), mz - np.float32(self.origin[2]))
        m = self.to_index.astype(np.float32)
        idx = [m[r, 0] * d[0] + m[r, 1] * d[1] + m[r, 2] * d[2] for r in (2, 1, 0)]  # (k, j, i) for (z, y, x)
        out = ndimage.map_coordinates(volume, [i.ravel() for i in idx], order=1, mode="constant", cval=outside)
        return out.reshape(mx.shape).astype(np.float32)


def nilearn_data_folder() -> Path | None:
    """nilearn's bundled data folder, found without importing nilearn; None when it is not installed."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def template_folder(folder: str | None) -> Path:
    """The folder holding the template maps: ``folder`` if given, else nilearn's; ValueError naming what is missing."""
    where = Path(folder) if folder is not None else nilearn_data_folder()
    if where is None:
        raise ValueError("the template anatomy (the generator's default brain) needs the ICBM 2009a maps: install "
                         "nilearn (pip install nilearn, or the train extra), give a folder holding "
                         + ", ".join(TEMPLATE_FILES.values()) + " (--anatomy-template), or use the procedural "
                         "brain (--p-template-anatomy 0)")
    missing = [name for name in TEMPLATE_FILES.values() if not (where / name).is_file()]
    if missing:
        raise ValueError(f"{where} lacks the template maps {missing}")
    return where


def _outline_distance(tissue: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Signed distance (mm, negative inside) to the brain's closed outline: tissue >= 0.5, sulci bridged by a
    closing, ventricles filled, the largest component kept."""
    inside = tissue >= 0.5
    r = OUTLINE_CLOSING_MM
    pad = r + 1
    zz, yy, xx = np.ogrid[-r:r + 1, -r:r + 1, -r:r + 1]
    ball = zz * zz + yy * yy + xx * xx <= r * r
    inside = ndimage.binary_closing(np.pad(inside, pad), structure=ball)[pad:-pad, pad:-pad, pad:-pad]
    inside = ndimage.binary_fill_holes(inside)
    labels, n = ndimage.label(inside)
    if n > 1:
        inside = labels == (1 + int(np.argmax(ndimage.sum(inside, labels, range(1, n + 1)))))
    sampling = tuple(float(s) for s in spacing[::-1])
    out = ndimage.distance_transform_edt(~inside, sampling=sampling) - ndimage.distance_transform_edt(
        inside, sampling=sampling)
    return out.astype(np.float32)


@lru_cache(maxsize=2)
def load_template(folder: str | None = None) -> TemplateBrain:
    """Read the template maps (once per process) and derive the outline; ValueError if they are missing or odd."""
    import SimpleITK as sitk

    from StrokeSegLib.common.geometry import same_grid

    where = template_folder(folder)
    images = {key: sitk.ReadImage(str(where / name)) for key, name in TEMPLATE_FILES.items()}
    gm_img = images["gm"]
    for key, img in images.items():
        if not same_grid(img, gm_img):
            raise ValueError(f"{where / TEMPLATE_FILES[key]} is not on the grey matter map's grid (size, origin, "
                             "spacing and direction must be equal)")
    arrays = {}
    for key, img in images.items():
        a = sitk.GetArrayFromImage(img).astype(np.float32)
        top = float(a.max())
        if top <= 0.0:
            raise ValueError(f"{where / TEMPLATE_FILES[key]} is empty")
        arrays[key] = a / np.float32(255.0 if top > 1.5 else 1.0)
    spacing = np.asarray(gm_img.GetSpacing(), float)
    direction = np.asarray(gm_img.GetDirection(), float).reshape(3, 3)
    template = TemplateBrain(gm=arrays["gm"], wm=arrays["wm"],
                             outline_mm=_outline_distance(arrays["gm"] + arrays["wm"], spacing),
                             origin=np.asarray(gm_img.GetOrigin(), float),
                             to_index=np.linalg.inv(direction * spacing[None, :]), folder=str(where))
    _check_plausible(template, where)
    return template


def _check_plausible(template: TemplateBrain, where: Path) -> None:
    """Refuse maps that would make a plausible-looking but wrong brain: grey and white matter swapped (white matter
    must lie deeper below the outline) or a brain outside MNI space (its tissue centre far from ICBM 2009a's)."""
    depth = -template.outline_mm
    gm_depth = float((template.gm * depth).sum() / template.gm.sum())
    wm_depth = float((template.wm * depth).sum() / template.wm.sum())
    if wm_depth <= gm_depth:
        raise ValueError(f"the maps in {where} look swapped: white matter lies {wm_depth:.1f} mm below the brain's "
                         f"outline on average, grey matter {gm_depth:.1f} mm; {TEMPLATE_FILES['gm']} must be the grey "
                         "matter map")
    k, j, i = np.nonzero(template.gm + template.wm >= 0.5)
    index_centre = np.array([i.mean(), j.mean(), k.mean()])
    centre = template.origin + np.linalg.inv(template.to_index) @ index_centre
    off = float(np.linalg.norm(centre - np.asarray(TISSUE_CENTRE_LPS_MM)))
    if off > TISSUE_CENTRE_TOLERANCE_MM:
        raise ValueError(f"the brain in {where} is not in MNI space: its tissue centre lies {off:.0f} mm from the "
                         f"ICBM 2009a brain's (LPS {TISSUE_CENTRE_LPS_MM} mm)")


def _outline_at_mni(template: TemplateBrain, mx: np.ndarray, my: np.ndarray, mz: np.ndarray,
                    params: HeadParams) -> np.ndarray:
    """Signed distance (anatomical mm, negative inside) to the brain outline at MNI points (LPS mm)."""
    d = template.sample(template.outline_mm, mx, my, mz, outside=float(template.outline_mm.max()))
    d *= np.float32(float(np.mean(params.scale)) / _MNI_PER_MODEL_MM)
    return d


def template_outline(template: TemplateBrain, x: np.ndarray, y: np.ndarray, z: np.ndarray,
                     params: HeadParams) -> np.ndarray:
    """Signed distance (anatomical mm, negative inside) to the brain outline at model-frame points."""
    mx, my, mz = model_to_mni(x, y, z, mirror=False)
    return _outline_at_mni(template, mx, my, mz, params)


def _regions(mx: np.ndarray, my: np.ndarray, mz: np.ndarray) -> np.ndarray:
    """Coarse regions from MNI position (LPS mm): brainstem, cerebellum below the tentorium, cerebrum elsewhere."""
    xr, yr, zr = -mx, -my, mz  # RAS, as MNI atlases are usually described
    region = np.full(mx.shape, REGION_CEREBRUM, np.uint8)
    tentorium = np.float32(-12.0) - np.float32(0.2) * np.abs(xr) + np.float32(0.3) * (np.float32(-45.0) - yr)
    region[(yr < -35.0) & (zr < tentorium)] = REGION_CEREBELLUM
    region[(np.abs(xr) < 14.0) & (yr > -42.0) & (yr < -8.0) & (zr < -8.0)] = REGION_BRAINSTEM
    return region


def build_template_anatomy(params: HeadParams, grid: AxisGrid, fields: AnatomyFields,
                           template: TemplateBrain) -> Anatomy:
    """The template brain on ``grid``, deformed and scaled like the procedural brain of the same head."""
    p = params
    x, y, z = model_coordinates(grid, p, fields)
    mx, my, mz = model_to_mni(x, y, z, mirror=False)
    gm = template.sample(template.gm, mx, my, mz, outside=0.0)
    wm = template.sample(template.wm, mx, my, mz, outside=0.0)
    outline = _outline_at_mni(template, mx, my, mz, p)

    tissue = np.minimum(gm + wm, 1.0)
    cut = np.float32(ATROPHY_CUT * p.atrophy)
    thinned = np.clip((tissue - cut) / (np.float32(1.0) - cut), 0.0, 1.0)
    keep = np.divide(thinned, tissue, out=np.zeros_like(tissue), where=tissue > 1e-6)
    gm *= keep
    wm *= keep

    brain = ramp(-outline)
    icv = np.maximum(ramp(np.float32(p.ext_csf_mm) - outline), brain)
    depth = np.maximum(-outline, 0.0)
    region = _regions(mx, my, mz)
    (bx0, bx1), (by0, by1), (bz0, bz1) = DEEP_GREY_BOX
    xr, yr = -mx, -my
    deep = ((np.abs(xr) >= bx0) & (np.abs(xr) < bx1) & (yr > by0) & (yr < by1) & (mz > bz0) & (mz < bz1)
            & (depth > DEEP_GREY_DEPTH_MM) & (region == REGION_CEREBRUM))
    dgm = np.where(deep, gm, np.float32(0.0)).astype(np.float32)
    gm = gm - dgm
    region[deep & (dgm > 0.5)] = REGION_DEEP_GREY
    region[brain < 0.5] = REGION_NONE
    gm = np.minimum(gm, icv)
    wm = np.minimum(wm, icv - gm)
    dgm = np.minimum(dgm, np.maximum(icv - gm - wm, 0.0))
    total = wm + gm + dgm
    csf = np.maximum(icv - total, 0.0)
    return Anatomy(grid=grid, params=p, wm=wm, gm=gm, dgm=dgm, csf=csf, icv=icv, brain=brain, depth=depth,
                   side=x, region=region, model_xyz=(x, y, z), tissue=total)
