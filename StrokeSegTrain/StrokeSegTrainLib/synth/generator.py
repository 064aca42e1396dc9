"""One synthetic case from (seed, index): anatomy -> tissue changes -> signals -> acquisition -> images + manifest.

Every random choice comes from ``SeedSequence([seed, index])`` split into one stream per stage, so a case is the
same whatever the number of cases or workers, and changing how one stage draws does not reshuffle the others.
"""
from __future__ import annotations

from dataclasses import Field, dataclass, field
from dataclasses import fields as dataclass_fields

import numpy as np
import SimpleITK as sitk

from .acquisition import ADC_UNITS, AcquiredCase, acquire, sample_acquisition
from .adc_grid import regrid_adc
from .anatomy import BRAIN_BOX_MODEL, Anatomy, anatomy_box, build_anatomy, draw_fields, sample_head
from .artifacts import BiasField, ReceiveCoilProfile, susceptibility_gain
from .eddy import sample_eddy_misregistration
from .extracranial import build_head
from .fields import AxisGrid, covering_grid
from .geometry import ScanGeometry, sample_geometry
from .lesion_library import resolve_library
from .lesions import VOLUME_RANGE_ML, LesionPlan, render_lesions, sample_lesion_plan
from .mimics import add_mimics
from .mri_physics import (
    TissueChanges,
    add_regional_variation,
    add_texture,
    head_signals,
    sample_tissue_properties,
    synthesize_signals,
)
from .normal_variants import add_bright_cortex, add_symmetric_bright_cortex
from .real_lesions import render_real_lesion
from .template_anatomy import build_template_anatomy, load_template, template_outline

# Append only: a new stream must not reshuffle the existing ones.
_STREAMS = ("head", "anatomy", "physics", "texture", "plan", "lesions", "mimics", "geometry", "acquisition",
            "noise", "artefacts", "coil", "cortex", "eddy", "symmetry", "real", "adcgrid", "template")


def _share(default: float, text: str) -> float:
    """A SynthConfig share (probability in [0, 1]): its default and the help text of its ``--p-*`` flag."""
    return field(default=default, metadata={"share": True, "help": text})


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of a synthetic data set (defaults mimic the ISLES 2022 mix plus unstripped clinical scans).

    The shares (fields made by ``_share``) are the one definition of the generator's probabilities: the ``--p-*``
    flags of ``strokeseg-train synth``, their help and their defaults are generated from them.
    """

    p_no_lesion: float = _share(0.1, "share of lesion-free cases")
    p_stripped: float = _share(0.6, "share of skull-stripped cases")
    volume_range_ml: tuple[float, float] = VOLUME_RANGE_ML
    fine_mm: float = 1.0
    max_oblique_deg: float = 20.0
    p_receive_coil: float = _share(
        0.5, "share of cases whose unnormalised receive-coil profile brightens the brain's periphery "
             "(ReceiveCoilProfile)")
    p_bright_cortex: float = _share(0.5, "share of cases with patches of normal cortex that are bright on DWI "
                                         "(normal_variants)")
    p_eddy_misregistration: float = _share(
        0.5, "share of cases whose b=0 image is shifted against the DWI by eddy currents, which biases ADC at "
             "tissue edges (eddy)")
    p_symmetric_cortex: float = _share(
        0.0, "share of cases with mirror-symmetric bright cortex whose ADC is mildly low, a normal look that only "
             "symmetry tells from an infarct (normal_variants)")
    p_real_lesions: float = _share(
        0.75, "share of lesion cases whose lesion is a real infarct mask from the MNI library (real_lesions); the "
              "rest get the procedural kinds (lesions)")
    #: Where real masks come from: None for the bundled library, else a library ``.npz`` or a folder of MNI masks.
    lesion_library: str | None = None
    p_template_anatomy: float = _share(
        1.0, "share of cases whose brain is the ICBM 2009a template (from nilearn or anatomy_template), deformed per "
             "case; the rest get the procedural anatomy (template_anatomy)")
    #: Folder of the template's grey and white matter maps; None: nilearn's bundled copy.
    anatomy_template: str | None = None
    p_adc_other_grid: float = _share(
        0.25, "share of cases whose ADC is stored on a rotated grid of other voxels than the DWI (adc_grid)")
    threads: int = 1


def share_fields() -> tuple[Field, ...]:
    """The SynthConfig fields that are shares of cases (probabilities), in declaration order."""
    return tuple(f for f in dataclass_fields(SynthConfig) if f.metadata.get("share"))


def check_synth_settings(settings: dict, where: str = "") -> None:
    """Refuse unknown SynthConfig keys and shares outside [0, 1] with a ValueError naming the key (``where``: the
    place in a file the settings came from, e.g. ``stages[2].synth``; callers add the file)."""
    at = f" in {where}" if where else ""
    known = {f.name for f in dataclass_fields(SynthConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"unknown generator settings {unknown}{at}; known: {sorted(known)}")
    for f in share_fields():
        value = settings.get(f.name)
        if f.name in settings and (isinstance(value, bool) or not isinstance(value, (int, float))
                                   or not 0.0 <= value <= 1.0):
            raise ValueError(f"{f.name}{at} must be a number between 0 and 1, not {value!r}")


@dataclass
class SynthCase:
    """Images on one grid (DWI, ADC in ``info['adc_units']``, uint mask) and the manifest entry describing them."""

    case_id: str
    dwi: sitk.Image
    adc: sitk.Image
    mask: sitk.Image
    info: dict
    acquired: AcquiredCase | None = field(default=None, repr=False)


def case_id(index: int) -> str:
    """ISLES-like subject name: index 0 -> ``sub-synth0001``."""
    return f"sub-synth{index + 1:04d}"


#: Spacing (mm) of the extracranial head grid of unstripped cases: skull and scalp need no finer detail.
HEAD_GRID_MM = 2.0


def _visible_grid(box: tuple[np.ndarray, np.ndarray], geom: ScanGeometry, spacing: float) -> AxisGrid:
    """Axis-aligned anatomical grid over ``box`` cut down to what the stored grid can see."""
    lo, hi = box
    anat_corners = (geom.corners() - geom.head_translation) @ geom.head_rotation  # physical -> anatomical
    lo = np.maximum(lo, anat_corners.min(axis=0) - 2.0)
    hi = np.minimum(hi, anat_corners.max(axis=0) + 2.0)
    return covering_grid(lo, np.maximum(hi, lo + 2 * spacing), spacing)


def _render(plan: LesionPlan, anat: Anatomy, changes: TissueChanges, rngs: dict[str, np.random.Generator],
            config: SynthConfig) -> tuple[list[dict], str]:
    """The case's lesions: a real library mask for a share ``p_real_lesions`` of lesion cases, else the plan's
    procedural lesions; returns their descriptions and the pattern name."""
    real_rng = rngs["real"]
    if plan.pattern != "none" and real_rng.random() < config.p_real_lesions:
        placed = render_real_lesion(resolve_library(config.lesion_library), anat, changes, real_rng)
        if placed is not None:
            return [placed], "real"
    return render_lesions(plan, anat, changes, rngs["lesions"]), plan.pattern


def generate_case(seed: int, index: int, config: SynthConfig = SynthConfig()) -> SynthCase:
    """Generate case ``index`` of the data set ``seed`` (deterministic)."""
    rngs = dict(zip(_STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(
        len(_STREAMS)))))
    head = sample_head(rngs["head"])
    fields = draw_fields(rngs["anatomy"], head)
    props = sample_tissue_properties(rngs["physics"])
    plan = sample_lesion_plan(rngs["plan"], config.p_no_lesion, config.volume_range_ml)
    acq = sample_acquisition(rngs["acquisition"], config.p_stripped)
    z_extent = (BRAIN_BOX_MODEL[0][2] * head.scale[2], BRAIN_BOX_MODEL[1][2] * head.scale[2])
    geom = sample_geometry(rngs["geometry"], z_extent, max_oblique_deg=config.max_oblique_deg)

    grid = _visible_grid(anatomy_box(head), geom, config.fine_mm)
    use_template = rngs["template"].random() < config.p_template_anatomy
    template = load_template(config.anatomy_template) if use_template else None
    anat = (build_anatomy(head, grid, fields) if template is None
            else build_template_anatomy(head, grid, fields, template))
    changes = TissueChanges.none(grid.shape)
    add_texture(changes, anat, props, rngs["texture"])
    regional = add_regional_variation(changes, anat, rngs["texture"])
    cortex_rng = rngs["cortex"]
    bright = cortex_rng.random() < config.p_bright_cortex
    bright_cortex = add_bright_cortex(anat, changes, cortex_rng) if bright else None
    symmetry_rng = rngs["symmetry"]
    symmetric_cortex = (add_symmetric_bright_cortex(anat, changes, symmetry_rng)
                        if symmetry_rng.random() < config.p_symmetric_cortex else None)
    mimics = add_mimics(anat, changes, rngs["mimics"])
    lesions, pattern = _render(plan, anat, changes, rngs, config)
    s0, sb = synthesize_signals(anat, props, changes)

    art = rngs["artefacts"]
    bias_amp = float(art.uniform(0.05, 0.3))
    bias = BiasField(art, bias_amp)
    gain = bias.on_grid(grid)
    coil_rng = rngs["coil"]
    coil = ReceiveCoilProfile(coil_rng, head) if coil_rng.random() < config.p_receive_coil else None
    if coil is not None:
        gain *= coil.on_grid(grid)
    sus = susceptibility_gain(anat, art)
    if sus is not None:
        gain *= sus[0]
        sb *= sus[1]
    s0 *= gain
    sb *= gain
    head_signals_ = None
    if not acq.stripped:
        head_grid = _visible_grid(anatomy_box(head, with_head=True), geom, HEAD_GRID_MM)
        outline = None if template is None else (lambda x, y, z: template_outline(template, x, y, z, head))
        h0, hb = head_signals(build_head(head, head_grid, fields, outline), props, rngs["texture"])
        g = bias.on_grid(head_grid)
        if coil is not None:
            g *= coil.on_grid(head_grid)
        head_signals_ = (head_grid, h0 * g, hb * g)
    eddy_rng = rngs["eddy"]
    eddy = (sample_eddy_misregistration(eddy_rng, geom) if eddy_rng.random() < config.p_eddy_misregistration
            else None)
    lesion_fraction = changes.lesion * anat.tissue
    wm_signal = float(np.exp(-props.b_value * props.adc["wm"]))
    acquired = acquire(grid, s0, sb, lesion_fraction, anat.icv, geom, acq, props.b_value, wm_signal, rngs["noise"],
                       head=head_signals_, fine_mm=config.fine_mm, threads=config.threads, eddy=eddy)

    adc, adc_grid = acquired.adc, None
    adc_rng = rngs["adcgrid"]
    if adc_rng.random() < config.p_adc_other_grid:
        adc, adc_grid = regrid_adc(acquired.adc, adc_rng)
    voxel_ml = float(np.prod(geom.spacing)) / 1000.0
    mask_voxels = int(sitk.GetArrayViewFromImage(acquired.mask).sum())
    cid = case_id(index)
    info = {
        "case_id": cid, "index": index, "seed": [int(seed), int(index)], "pattern": pattern,
        "lesion_count": len(lesions), "lesions": lesions,
        "lesion_volume_ml": round(float(acquired.lesion_fraction.sum()) * voxel_ml, 4),
        "lesion_volume_fine_ml": round(float(lesion_fraction.sum()) * grid.voxel_volume_mm3 / 1000.0, 4),
        "mask_volume_ml": round(mask_voxels * voxel_ml, 4), "mask_voxels": mask_voxels,
        "adc_units": acq.adc_units, "adc_unit_name": ADC_UNITS[acq.adc_units][0], "adc_dtype": acq.adc_dtype,
        "dwi_dtype": acq.dwi_dtype, "mask_dtype": acq.mask_dtype, "b_value": round(props.b_value, 1),
        "tissue_adc_mm2_s": {k: props.adc[k] for k in ("wm", "gm", "dgm", "csf")},
        "size": list(geom.size), "spacing": [round(v, 6) for v in geom.spacing],
        "origin": [round(v, 4) for v in geom.origin], "direction": [round(v, 8) for v in geom.direction],
        "orientation": geom.orientation_code(), "obliquity_deg": round(geom.obliquity_deg(), 2),
        "slice_axis": geom.slice_axis, "skull_stripped": acq.stripped, "snr": round(acq.snr, 2),
        "dwi_white_matter_level": round(acq.dwi_level, 2), "bias_amplitude": round(bias_amp, 3),
        "receive_coil": coil.describe() if coil is not None else None,
        "susceptibility_artefact": sus is not None, "atrophy": round(head.atrophy, 3), "mimics": mimics,
        "regional": regional, "bright_cortex": bright_cortex,
        "eddy_misregistration": eddy.describe() if eddy is not None else None,
        "symmetric_cortex": symmetric_cortex, "adc_other_grid": adc_grid,
        "anatomy": "procedural" if template is None else "template",
    }
    return SynthCase(case_id=cid, dwi=acquired.dwi, adc=adc, mask=acquired.mask, info=info,
                     acquired=acquired)
