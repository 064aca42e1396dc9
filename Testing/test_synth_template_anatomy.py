"""Template anatomy in the generator: the template brain lands in the hemisphere it was drawn in (the same MNI chain
as real lesions), atrophy thins tissue at CSF borders, the skull wraps the template's outline, cases are complete and
deterministic, and a missing template is refused up front naming the folder. A small synthetic "template" on an
MNI-like grid (LPS, as nilearn's files) stands in for ICBM 2009a; the real maps are checked when nilearn is
installed."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegTrainLib.cli import main as train_main
from StrokeSegTrainLib.synth.anatomy import REGION_NONE, anatomy_box, draw_fields, sample_head
from StrokeSegTrainLib.synth.extracranial import build_head
from StrokeSegTrainLib.synth.fields import covering_grid
from StrokeSegTrainLib.synth.generator import SynthConfig, generate_case
from StrokeSegTrainLib.synth.real_lesions import model_to_mni
from StrokeSegTrainLib.synth.template_anatomy import (
    TEMPLATE_FILES,
    build_template_anatomy,
    load_template,
    nilearn_data_folder,
    template_outline,
)

#: A hole (no tissue) in the fake template's left hemisphere, LPS mm (x > 0 is left).
HOLE_MM, HOLE_RADIUS_MM = np.array([32.0, -10.0, 22.0]), 9.0


@pytest.fixture(scope="module")
def fake_template(tmp_path_factory) -> Path:
    """Grey matter shell and white matter core of an ellipsoidal brain on a 2 mm LPS grid, with a hole on the left."""
    folder = tmp_path_factory.mktemp("template")
    ref = sitk.Image([99, 117, 95], sitk.sitkUInt8)
    ref.SetSpacing((2.0, 2.0, 2.0))
    ref.SetOrigin((98.0, 134.0, -72.0))
    ref.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    k, j, i = np.indices(ref.GetSize()[::-1])
    x, y, z = 98.0 - 2.0 * i, 134.0 - 2.0 * j, -72.0 + 2.0 * k
    r = np.sqrt((x / 68.0) ** 2 + ((y - 18.0) / 86.0) ** 2 + ((z - 10.0) / 62.0) ** 2)
    hole = np.sqrt((x - HOLE_MM[0]) ** 2 + (y - HOLE_MM[1]) ** 2 + (z - HOLE_MM[2]) ** 2) < HOLE_RADIUS_MM
    wm = np.where((r < 0.85) & ~hole, 255, 0).astype(np.uint8)
    gm = np.where((r >= 0.85) & (r < 1.0), 255, 0).astype(np.uint8)
    for key, values in (("gm", gm), ("wm", wm)):
        image = sitk.GetImageFromArray(values)
        image.CopyInformation(ref)
        sitk.WriteImage(image, str(folder / TEMPLATE_FILES[key]))
    return folder


def _head_and_grid(seed: int):
    rng = np.random.default_rng(seed)
    head = sample_head(rng)
    fields = draw_fields(rng, head)
    return head, fields, covering_grid(*anatomy_box(head), spacing=2.0)


def test_template_brain_lands_in_the_hemisphere_it_was_drawn_in(fake_template: Path):
    template = load_template(str(fake_template))
    for seed in (1, 2):
        head, fields, grid = _head_and_grid(seed)
        anat = build_template_anatomy(head, grid, fields, template)
        hole = (anat.depth > 15.0) & (anat.tissue < 0.2)  # the fake has no ventricles: deep CSF is the hole
        assert hole.sum() > 50
        assert np.all(anat.side[hole] > 0.0)  # model-frame x > 0: the left hemisphere, as drawn
        x, y, z = (np.broadcast_to(c, grid.shape)[hole] for c in anat.model_xyz)
        centre = np.array([float(np.mean(c)) for c in model_to_mni(x, y, z, mirror=False)])
        assert np.linalg.norm(centre - HOLE_MM) < 4.0
        assert np.all(anat.region[anat.tissue > 0.5] != REGION_NONE)
        total = anat.wm + anat.gm + anat.dgm + anat.csf
        assert float(total.max()) <= 1.0 + 1e-5 and np.allclose(total, anat.icv, atol=1e-5)


def test_atrophy_thins_tissue_and_widens_csf(fake_template: Path):
    template = load_template(str(fake_template))
    head, fields, grid = _head_and_grid(3)
    young = build_template_anatomy(dataclasses.replace(head, atrophy=0.0), grid, fields, template)
    old = build_template_anatomy(dataclasses.replace(head, atrophy=1.0), grid, fields, template)
    assert np.array_equal(young.icv, old.icv)
    assert old.tissue.sum() < 0.99 * young.tissue.sum()
    assert old.csf.sum() > young.csf.sum()
    solid = young.tissue > 0.999  # only partial-volume borders give way: solid tissue stays
    assert np.allclose(old.tissue[solid], young.tissue[solid], atol=2e-3)


def test_skull_wraps_the_template_outline(fake_template: Path):
    template = load_template(str(fake_template))
    head, fields, grid = _head_and_grid(4)
    anat = build_template_anatomy(head, grid, fields, template)
    tissues = build_head(head, grid, fields, lambda x, y, z: template_outline(template, x, y, z, head))
    assert tissues.bone.sum() > 0
    outline = template_outline(template, *anat.model_xyz, head)
    # no bone inside the intracranial space (the head grid's partial-volume edge is one voxel wide)
    assert float(tissues.bone[outline < head.ext_csf_mm - grid.spacing].max()) == 0.0
    shell = (outline > head.ext_csf_mm + 1.5) & (outline < head.ext_csf_mm + head.skull_mm * 0.7)
    assert float(tissues.bone[shell].mean()) > 0.8


def test_template_cases_are_complete_deterministic_and_say_their_anatomy(fake_template: Path):
    config = SynthConfig(p_template_anatomy=1.0, anatomy_template=str(fake_template), p_no_lesion=0.0,
                         p_stripped=0.0, p_real_lesions=1.0, p_adc_other_grid=0.0)
    case = generate_case(11, 0, config)
    again = generate_case(11, 0, config)
    assert case.info["anatomy"] == "template" and not case.info["skull_stripped"]
    dwi = sitk.GetArrayFromImage(case.dwi)
    assert np.array_equal(dwi, sitk.GetArrayFromImage(again.dwi))
    mask = sitk.GetArrayFromImage(case.mask) > 0
    assert mask.any() and case.info["mask_volume_ml"] > 0
    assert float(np.median(dwi[mask])) > 1.2 * float(np.median(dwi[dwi > np.percentile(dwi, 60)]))
    assert generate_case(11, 0, SynthConfig(p_template_anatomy=0.0)).info["anatomy"] == "procedural"


def test_missing_template_is_refused_up_front(tmp_path: Path, capsys):
    missing = tmp_path / "no-template"
    missing.mkdir()
    assert train_main(["synth", "--out", str(tmp_path / "o"), "--cases", "1", "--seed", "1",
                       "--p-template-anatomy", "1", "--anatomy-template", str(missing)]) != 0
    err = capsys.readouterr().err
    assert "template" in err and str(missing) in err and TEMPLATE_FILES["gm"] in err
    assert not (tmp_path / "o").exists()


def _altered_copy(source: Path, target: Path, swap: bool = False, shift_mm: float = 0.0,
                  wm_spacing: float | None = None) -> Path:
    """The fake template's two maps, swapped, moved or with the white matter map's spacing changed."""
    target.mkdir()
    names = {"gm": TEMPLATE_FILES["wm"], "wm": TEMPLATE_FILES["gm"]} if swap else TEMPLATE_FILES
    for key, name in TEMPLATE_FILES.items():
        image = sitk.ReadImage(str(source / name))
        image.SetOrigin(tuple(o + shift_mm for o in image.GetOrigin()))
        if key == "wm" and wm_spacing is not None:
            image.SetSpacing((wm_spacing,) * 3)
        sitk.WriteImage(image, str(target / names[key]))
    return target


@pytest.mark.parametrize(("change", "message"), [
    ({"swap": True}, "look swapped: white matter lies"),
    ({"shift_mm": 40.0}, r"is not in MNI space: its tissue centre lies 6\d mm"),
    ({"wm_spacing": 2.2}, "is not on the grey matter map's grid"),
])
def test_template_maps_that_would_make_a_wrong_brain_are_refused(fake_template: Path, tmp_path: Path, change: dict,
                                                                 message: str):
    folder = _altered_copy(fake_template, tmp_path / "altered", **change)
    with pytest.raises(ValueError, match=message) as caught:
        load_template(str(folder))
    assert str(folder) in str(caught.value)


NEEDS_NILEARN = pytest.mark.skipif(nilearn_data_folder() is None,
                                   reason="nilearn (which ships the ICBM 2009a maps) not installed")


@NEEDS_NILEARN
def test_icbm_template_from_nilearn_is_a_plausible_brain():
    template = load_template(None)
    assert template.gm.shape == (189, 233, 197)
    inside = template.outline_mm < 0
    assert 1.2e6 < inside.sum() < 2.0e6  # mm^3: an adult brain with its internal CSF
    tissue = (template.gm + template.wm)[inside]
    assert 0.75 < float(tissue.mean()) < 0.98


@NEEDS_NILEARN
def test_the_default_brain_is_the_icbm_template():
    assert generate_case(5, 0, SynthConfig(p_no_lesion=1.0)).info["anatomy"] == "template"
