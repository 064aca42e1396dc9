"""The synthetic generator makes what it claims: lesion contrast and sizes, empty masks without lesions, consistent ADC
units, the manifest's geometry, determinism, and the exact ISLES 2022 Zenodo layout from the CLI."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from StrokeSegTrainLib.cli import main as train_main
from StrokeSegTrainLib.synth.acquisition import ADC_UNITS, sample_acquisition
from StrokeSegTrainLib.synth.anatomy import build_anatomy, draw_fields, sample_head
from StrokeSegTrainLib.synth.dataset import MANIFEST_NAME, case_paths
from StrokeSegTrainLib.synth.eddy import MAX_DISPLACEMENT_MM, EddyMisregistration, phase_encoding_axes
from StrokeSegTrainLib.synth.fields import AxisGrid
from StrokeSegTrainLib.synth.generator import SynthConfig, generate_case
from StrokeSegTrainLib.synth.geometry import ScanGeometry, sample_geometry
from StrokeSegTrainLib.synth.lesions import (
    CLAIMED_CORE_RATIO,
    CLAIMED_MASK_RATIO_MAX,
    RIM_ADC_FACTOR,
    VOLUME_RANGE_ML,
    sample_lesion_plan,
)
from StrokeSegTrainLib.synth.montage import save_montage
from StrokeSegTrainLib.synth.mri_physics import (
    TissueChanges,
    adc_from_signals,
    sample_tissue_properties,
    synthesize_signals,
)
from StrokeSegTrainLib.synth.normal_variants import SYMMETRIC_ADC_FACTOR, add_symmetric_bright_cortex, mirrored_noise

SEED = 2024
#: The settings these tests were written for: procedural lesions and brain, ADC on the DWI's grid (real library
#: lesions and ADCs on other grids have their own tests in test_synth_real_lesions.py, the template brain in
#: test_synth_template_anatomy.py).
PROCEDURAL = {"p_real_lesions": 0.0, "p_adc_other_grid": 0.0, "p_template_anatomy": 0.0}


@pytest.fixture(scope="module")
def lesion_cases():
    """Three cases that surely have lesions big enough to have a fully infarcted core."""
    config = SynthConfig(**PROCEDURAL, p_no_lesion=0.0, volume_range_ml=(1.0, 80.0))
    return [generate_case(SEED, i, config) for i in range(3)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A small tree written by ``strokeseg-train synth`` (two worker processes)."""
    out = tmp_path_factory.mktemp("synth") / "tree"
    settings = out.parent / "synth.json"
    settings.write_text(json.dumps(PROCEDURAL))
    assert train_main(["synth", "--out", str(out), "--cases", "2", "--seed", str(SEED), "--workers", "2",
                       "--config", str(settings),
                       "--quiet"]) == 0
    return out


def _arrays(case):
    adc = sitk.GetArrayFromImage(case.adc).astype(np.float64) * case.info["adc_units"]
    return sitk.GetArrayFromImage(case.dwi).astype(np.float64), adc, sitk.GetArrayFromImage(case.mask) > 0


def _normal_tissue(adc, mask, brain):
    """Brain voxels away from the lesion that are tissue, not CSF (ADC below 1.5e-3 mm^2/s)."""
    return brain & ~ndimage.binary_dilation(mask, iterations=3) & (adc > 0.2e-3) & (adc < 1.5e-3)


def test_lesion_adc_is_reduced_as_claimed(lesion_cases):
    for case in lesion_cases:
        dwi, adc, mask = _arrays(case)
        normal = np.median(adc[_normal_tissue(adc, mask, case.acquired.brain_mask)])
        core = case.acquired.lesion_fraction >= 0.9  # stored voxels fully inside the infarct
        assert core.sum() >= 5, case.info["lesions"]
        ratio_core = adc[core].mean() / normal
        ratio_mask = adc[mask].mean() / normal
        assert CLAIMED_CORE_RATIO[0] <= ratio_core <= CLAIMED_CORE_RATIO[1], (case.case_id, ratio_core)
        assert ratio_mask < CLAIMED_MASK_RATIO_MAX, (case.case_id, ratio_mask)


def test_lesion_is_bright_on_dwi(lesion_cases):
    for case in lesion_cases:
        dwi, adc, mask = _arrays(case)
        ring = ndimage.binary_dilation(mask, iterations=3) & ~mask & case.acquired.brain_mask & (adc < 1.5e-3)
        assert dwi[mask].mean() > 1.15 * dwi[ring].mean(), case.case_id


def test_mask_volume_matches_manifest(lesion_cases):
    for case in lesion_cases:
        info = case.info
        voxel_ml = float(np.prod(case.mask.GetSpacing())) / 1000.0
        mask_ml = float(sitk.GetArrayViewFromImage(case.mask).sum()) * voxel_ml
        assert mask_ml == pytest.approx(info["mask_volume_ml"], abs=1e-3)
        # The mask thresholds the partial-volume lesion at 0.5: its volume differs from the true lesion volume
        # by boundary voxels only.
        true_ml = info["lesion_volume_ml"]
        assert abs(mask_ml - true_ml) <= 0.2 * true_ml + 4 * voxel_ml, (case.case_id, mask_ml, true_ml)
        # The true volume in the field of view never exceeds what was drawn on the fine grid, and every lesion was
        # drawn at its planned size.
        assert true_ml <= info["lesion_volume_fine_ml"] * 1.02 + 1e-3
        for lesion in info["lesions"]:
            assert lesion["volume_ml"] == pytest.approx(lesion["target_ml"], rel=0.05, abs=0.01), lesion


def test_plans_cover_the_size_range():
    rng = np.random.default_rng(0)
    plans = [sample_lesion_plan(rng) for _ in range(600)]
    volumes = np.array([lesion.target_ml for plan in plans for lesion in plan.lesions])
    assert volumes.min() >= VOLUME_RANGE_ML[0] and volumes.max() <= VOLUME_RANGE_ML[1]
    assert volumes.min() < 0.1 and volumes.max() > 120.0
    assert np.mean(volumes < 1.0) > 0.4  # many small lesions
    totals = np.array([sum(lesion.target_ml for lesion in plan.lesions) for plan in plans if plan.lesions])
    assert np.mean(totals > 20.0) > 0.1  # and a fair share of large infarcts
    none = np.mean([plan.pattern == "none" for plan in plans])
    assert 0.06 < none < 0.14
    counts = Counter(len(plan.lesions) for plan in plans)
    assert counts[1] > 0 and max(counts) >= 10


def test_lesion_free_case_has_empty_mask():
    case = generate_case(SEED, 7, SynthConfig(**PROCEDURAL, p_no_lesion=1.0))
    assert case.info["lesion_count"] == 0 and case.info["pattern"] == "none"
    assert sitk.GetArrayViewFromImage(case.mask).sum() == 0
    assert case.info["mask_volume_ml"] == 0.0 and case.info["lesion_volume_ml"] == 0.0


def test_adc_units_scale_back_to_tissue_values(lesion_cases):
    for case in lesion_cases:
        info = case.info
        stored = sitk.GetArrayFromImage(case.adc)
        assert stored.dtype == np.dtype(info["adc_dtype"])
        assert info["adc_dtype"] in ADC_UNITS[info["adc_units"]][1]
        _, adc, mask = _arrays(case)
        tissue = np.median(adc[_normal_tissue(adc, mask, case.acquired.brain_mask)])
        lo, hi = info["tissue_adc_mm2_s"]["wm"], info["tissue_adc_mm2_s"]["gm"]
        assert 0.85 * lo < tissue < 1.15 * hi, (info["adc_units"], tissue)
        csf = np.percentile(adc[case.acquired.brain_mask], 99)
        assert 1.8e-3 < csf < 5.1e-3  # the brightest brain voxels are CSF, in mm^2/s after scaling


def test_all_unit_conventions_and_dtypes_occur():
    rng = np.random.default_rng(1)
    params = [sample_acquisition(rng) for _ in range(300)]
    assert {p.adc_units for p in params} == {1.0, 1e-3, 1e-6}
    assert {p.adc_dtype for p in params if p.adc_units == 1e-6} >= {"int16"}
    assert all(p.adc_dtype != "int16" for p in params if p.adc_units != 1e-6)
    assert {p.stripped for p in params} == {True, False}


def test_geometry_matches_manifest(lesion_cases):
    for case in lesion_cases:
        info = case.info
        for image in (case.dwi, case.adc, case.mask):
            assert list(image.GetSize()) == info["size"]
            np.testing.assert_allclose(image.GetSpacing(), info["spacing"], rtol=1e-5)
            np.testing.assert_allclose(image.GetOrigin(), info["origin"], atol=1e-3)
            np.testing.assert_allclose(image.GetDirection(), info["direction"], atol=1e-6)
        d = np.asarray(info["direction"]).reshape(3, 3)
        np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-6)
        nearest = np.degrees(np.arccos(np.abs(d).max(axis=0).min()))
        assert nearest == pytest.approx(info["obliquity_deg"], abs=0.02)
        assert info["spacing"][info["slice_axis"]] == max(info["spacing"])


def test_geometry_sampler_is_oblique_permuted_and_anisotropic():
    rng = np.random.default_rng(3)
    geoms = [sample_geometry(rng, (-75.0, 60.0)) for _ in range(300)]
    oblique = np.array([g.obliquity_deg() for g in geoms])
    assert oblique.max() > 12.0 and oblique.max() <= 21.0
    assert len({g.orientation_code() for g in geoms}) >= 6  # LPS-, RAS-style, transposed, ...
    in_plane = np.array([min(g.spacing) for g in geoms])
    slices = np.array([g.spacing[g.slice_axis] for g in geoms])
    assert 0.8 <= in_plane.min() and in_plane.max() <= 2.0 + 1e-9
    assert 2.0 - 1e-9 <= slices.min() and slices.max() <= 5.0 + 1e-9 and np.mean(slices > 3.5) > 0.2


def test_generation_is_deterministic_per_seed_and_index(lesion_cases):
    config = SynthConfig(**PROCEDURAL, p_no_lesion=0.0, volume_range_ml=(1.0, 80.0))
    again = generate_case(SEED, 1, config)
    first = lesion_cases[1]
    assert again.info == first.info
    for a, b in ((again.dwi, first.dwi), (again.adc, first.adc), (again.mask, first.mask)):
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    assert lesion_cases[0].info["origin"] != first.info["origin"]


def test_stripped_and_unstripped_backgrounds():
    stripped = generate_case(SEED, 11, SynthConfig(**PROCEDURAL, p_stripped=1.0, p_no_lesion=1.0))
    unstripped = generate_case(SEED, 11, SynthConfig(**PROCEDURAL, p_stripped=0.0, p_no_lesion=1.0))
    for case, zero_outside in ((stripped, True), (unstripped, False)):
        dwi = sitk.GetArrayFromImage(case.dwi).astype(np.float64)
        outside = ~ndimage.binary_dilation(case.acquired.brain_mask, iterations=2)
        assert case.info["skull_stripped"] is zero_outside
        if zero_outside:
            assert np.all(dwi[outside] == 0)
        else:  # Rician background noise and a visible scalp
            assert np.mean(dwi[outside] > 0) > 0.9


def test_signals_give_tissue_adc_without_noise():
    rng = np.random.default_rng(5)
    head = sample_head(rng)
    grid = AxisGrid((-80.0, -100.0, -70.0), 2.0, (70, 100, 80))
    anat = build_anatomy(head, grid, draw_fields(rng, head))
    props = sample_tissue_properties(rng)
    s0, sb = synthesize_signals(anat, props, TissueChanges.none(grid.shape))
    adc = adc_from_signals(s0, sb, props.b_value)
    for name in ("wm", "csf"):
        pure = getattr(anat, name) > 0.999
        assert pure.sum() > 100
        np.testing.assert_allclose(adc[pure], props.adc[name], rtol=5e-3)
    tissue_ml = anat.tissue.sum() * 8.0 / 1000.0
    assert 600.0 < tissue_ml < 1800.0 and anat.brain.sum() * 8.0 / 1000.0 > tissue_ml
    assert 0.25 < anat.gm.sum() / anat.tissue.sum() < 0.65


def test_cli_writes_the_zenodo_layout(written):
    files = sorted(p.relative_to(written).as_posix() for p in written.rglob("*") if p.is_file())
    expected = [MANIFEST_NAME]
    for cid in ("sub-synth0001", "sub-synth0002"):
        expected += [f"derivatives/{cid}/ses-0001/{cid}_ses-0001_msk.nii.gz",
                     f"{cid}/ses-0001/dwi/{cid}_ses-0001_adc.nii.gz", f"{cid}/ses-0001/dwi/{cid}_ses-0001_dwi.nii.gz"]
    assert files == sorted(expected)
    manifest = json.loads((written / MANIFEST_NAME).read_text())
    assert [c["case_id"] for c in manifest["cases"]] == ["sub-synth0001", "sub-synth0002"]
    for entry in manifest["cases"]:
        paths = case_paths(written, entry["case_id"])
        assert entry["files"] == {k: p.relative_to(written).as_posix() for k, p in paths.items()}
        images = {k: sitk.ReadImage(str(p)) for k, p in paths.items()}
        for image in images.values():
            assert list(image.GetSize()) == entry["size"]
            np.testing.assert_allclose(image.GetDirection(), entry["direction"], atol=1e-6)
        assert sitk.GetArrayViewFromImage(images["adc"]).dtype == np.dtype(entry["adc_dtype"])
        assert int(sitk.GetArrayViewFromImage(images["mask"]).sum()) == entry["mask_voxels"]
        for key in ("seed", "lesion_count", "lesions", "spacing", "skull_stripped", "orientation", "adc_units"):
            assert key in entry
        assert entry["seed"] == [SEED, entry["index"]]


def test_written_cases_equal_direct_generation(written):
    direct = generate_case(SEED, 1, SynthConfig(**PROCEDURAL))
    dwi = sitk.ReadImage(str(case_paths(written, "sub-synth0002")["dwi"]))
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(dwi), sitk.GetArrayViewFromImage(direct.dwi))


def test_montage_is_a_png(lesion_cases, tmp_path: Path):
    out = save_montage(lesion_cases[:2], tmp_path / "m.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bright_cortex_patches_are_bright_on_dwi_with_normal_adc_and_not_in_the_mask():
    """Normal cortex brightened on DWI (its own random stream): same mask, brighter DWI in patches whose ADC stays
    above the highest ADC an infarct rim can have, so the model has to tell them apart by ADC."""
    plain = generate_case(SEED, 5, SynthConfig(**PROCEDURAL, p_stripped=1.0, p_no_lesion=0.0, p_bright_cortex=0.0))
    bright = generate_case(SEED, 5, SynthConfig(**PROCEDURAL, p_stripped=1.0, p_no_lesion=0.0, p_bright_cortex=1.0))
    assert plain.info["bright_cortex"] is None and bright.info["bright_cortex"]["share_of_cortex"] > 0.02
    gain, adc_ratio, in_mask = _brightened_patches(plain, bright)
    assert np.median(gain) > 1.12
    assert np.median(adc_ratio) > max(RIM_ADC_FACTOR) and np.median(adc_ratio) < 1.05
    assert not in_mask.any()


def _brightened_patches(plain, variant) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same case without and with a normal variant: asserts the mask is unchanged and that more than 200 normal
    tissue voxels got over 10 % brighter on DWI; returns their DWI gain, ADC ratio and whether each is in the mask."""
    dwi0, adc0, mask0 = _arrays(plain)
    dwi1, adc1, mask1 = _arrays(variant)
    assert mask0.any() and np.array_equal(mask0, mask1)
    tissue = _normal_tissue(adc0, mask0, plain.acquired.brain_mask)
    gain = dwi1[tissue] / np.maximum(dwi0[tissue], 1e-6)
    patch = gain > 1.1
    assert patch.sum() > 200
    return gain[patch], adc1[tissue][patch] / adc0[tissue][patch], mask1[tissue][patch]


def test_receive_coil_brightens_the_periphery_on_dwi_but_leaves_adc_alone():
    """The same case with and without the receive-coil profile (its own random stream, so nothing else changes)."""
    flat = generate_case(SEED, 12, SynthConfig(**PROCEDURAL, p_stripped=1.0, p_no_lesion=1.0, p_receive_coil=0.0))
    coil = generate_case(SEED, 12, SynthConfig(**PROCEDURAL, p_stripped=1.0, p_no_lesion=1.0, p_receive_coil=1.0))
    assert flat.info["receive_coil"] is None and coil.info["receive_coil"]["amplitude"] >= 0.25
    brain = flat.acquired.brain_mask
    depth = ndimage.distance_transform_edt(brain, sampling=flat.dwi.GetSpacing()[::-1])
    dwi0, adc0, _ = _arrays(flat)
    dwi1, adc1, _ = _arrays(coil)
    tissue = _normal_tissue(adc0, np.zeros_like(brain), brain)
    shell, core = tissue & (depth < 8.0), tissue & (depth > 25.0)
    assert shell.sum() > 500 and core.sum() > 500
    gain_shell = np.median(dwi1[shell] / np.maximum(dwi0[shell], 1e-6))
    gain_core = np.median(dwi1[core] / np.maximum(dwi0[core], 1e-6))
    assert gain_shell > 1.1 * gain_core
    assert abs(np.median(adc1[tissue] - adc0[tissue])) < 0.02 * np.median(adc0[tissue])


def _axial_geometry(direction: np.ndarray) -> ScanGeometry:
    """A 20 x 30 x 10 grid of 2 x 2 x 4 mm, slices along k, head unrotated."""
    return ScanGeometry(size=(20, 30, 10), spacing=(2.0, 2.0, 4.0), origin=(0.0, 0.0, 0.0),
                        direction=tuple(direction.ravel()), head_rotation=np.eye(3), head_translation=np.zeros(3),
                        slice_axis=2)


def test_eddy_misregistration_moves_the_b0_image_along_phase_encoding_only():
    """A step edge across j moves by shift / spacing voxels along j and nowhere else; A-P phase encoding is the
    in-plane axis along the head's y, whichever index axis stores it."""
    geom = _axial_geometry(np.eye(3))
    assert phase_encoding_axes(geom, anterior_posterior=True) == (1, 0)
    assert phase_encoding_axes(geom, anterior_posterior=False) == (0, 1)
    transposed = _axial_geometry(np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    assert phase_encoding_axes(transposed, anterior_posterior=True) == (0, 1)
    s0 = np.zeros((10, 30, 20), np.float32)
    s0[:, 15:, :] = 1.0  # tissue from j = 15 on
    moved = EddyMisregistration(pe_axis=1, ro_axis=0, shift_mm=2.0, scale=0.0, shear=0.0).apply(s0, geom)
    np.testing.assert_array_equal(moved[:, 14:, :], 1.0)  # sampled 1 voxel further on: the edge comes 1 closer
    np.testing.assert_array_equal(moved[:, :14, :], 0.0)
    capped = EddyMisregistration(pe_axis=1, ro_axis=0, shift_mm=10.0, scale=0.0, shear=0.0)
    assert np.all(capped.displacement_mm(geom) == MAX_DISPLACEMENT_MM)
    scaled = EddyMisregistration(pe_axis=1, ro_axis=0, shift_mm=0.0, scale=0.05, shear=0.0)
    d = scaled.displacement_mm(geom)
    expected = 0.05 * (np.arange(30) - 14.5) * 2.0  # scale * distance (mm) from the grid centre along j
    np.testing.assert_allclose(np.broadcast_to(d, (10, 30, 20))[4, :, 7], expected, atol=1e-5)
    across = EddyMisregistration(pe_axis=0, ro_axis=1, shift_mm=2.0, scale=0.0, shear=0.0).apply(s0, geom)
    np.testing.assert_array_equal(across, s0)  # an edge along the phase-encoding axis does not move


def test_eddy_misregistration_biases_adc_at_tissue_edges_and_leaves_dwi_and_mask_alone():
    """The same case with and without eddy currents (own random stream): identical DWI and mask; ADC unchanged
    inside homogeneous tissue but off by tens of per cent in both directions along edges, the infarct look-alike."""
    config = dict(p_stripped=1.0, p_no_lesion=0.0, p_bright_cortex=0.0, p_receive_coil=0.0)
    plain = generate_case(SEED, 3, SynthConfig(**PROCEDURAL, p_eddy_misregistration=0.0, **config))
    eddy = generate_case(SEED, 3, SynthConfig(**PROCEDURAL, p_eddy_misregistration=1.0, **config))
    assert plain.info["eddy_misregistration"] is None
    assert abs(eddy.info["eddy_misregistration"]["scale"]) > 0.01
    dwi0, adc0, mask0 = _arrays(plain)
    dwi1, adc1, mask1 = _arrays(eddy)
    assert np.array_equal(dwi0, dwi1) and np.array_equal(mask0, mask1)
    tissue = _normal_tissue(adc0, mask0, plain.acquired.brain_mask)
    change = adc1[tissue] / adc0[tissue] - 1.0
    assert abs(np.median(change)) < 0.01
    assert np.percentile(change, 2) < -0.15 and np.percentile(change, 98) > 0.15
    edge = ndimage.gaussian_gradient_magnitude(adc0, 1.0)[tissue]  # tissue and CSF edges show best on ADC
    flat, steep = edge < np.percentile(edge, 20), edge > np.percentile(edge, 80)
    assert np.median(np.abs(change[flat])) < 0.5 * np.median(np.abs(change[steep]))


def test_symmetric_bright_cortex_is_the_same_on_both_sides_of_the_midline():
    """The patch field takes equal values at mirror points, and on an anatomy the brightened cortex of the left and
    the right hemisphere covers the same places (front-back, up-down) with the same gain."""
    rng = np.random.default_rng(11)
    pts = rng.uniform(-60.0, 60.0, (3, 500)).astype(np.float32)
    both = mirrored_noise(np.random.default_rng(3), 30.0, np.concatenate([pts[0], -pts[0]]),
                          np.tile(pts[1], 2), np.tile(pts[2], 2))
    np.testing.assert_allclose(both[:500], both[500:], atol=1e-5)
    assert both.std() > 0.3  # a field, not a constant

    head = sample_head(rng)
    grid = AxisGrid((-80.0, -100.0, -70.0), 2.0, (70, 100, 80))
    anat = build_anatomy(head, grid, draw_fields(rng, head))
    changes = TissueChanges.none(grid.shape)
    info = add_symmetric_bright_cortex(anat, changes, np.random.default_rng(4))
    assert info["share_of_cortex"] > 0.02 and min(SYMMETRIC_ADC_FACTOR) <= info["adc_factor"] <= max(
        SYMMETRIC_ADC_FACTOR)
    gain = changes.s0_factor - 1.0
    x, y, z = (np.broadcast_to(c, grid.shape) for c in anat.model_xyz)
    bright = gain > 0.05
    # Histogram the brightened cortex over (y, z) separately for each hemisphere: mirror images match closely.
    bins = (np.linspace(-90, 90, 10), np.linspace(-85, 70, 9))
    left = np.histogram2d(y[bright & (x < 0)], z[bright & (x < 0)], bins=bins, weights=gain[bright & (x < 0)])[0]
    right = np.histogram2d(y[bright & (x > 0)], z[bright & (x > 0)], bins=bins, weights=gain[bright & (x > 0)])[0]
    assert left.sum() > 0 and 0.75 < left.sum() / right.sum() < 1.33
    assert np.corrcoef(left.ravel(), right.ravel())[0, 1] > 0.85
    adc_bright = changes.adc_factor[gain > 0.5 * (info["s0_gain"] - 1.0)]
    assert np.median(adc_bright) < 0.97 and np.median(adc_bright) > min(SYMMETRIC_ADC_FACTOR) - 0.01


def test_symmetric_bright_cortex_in_a_case_brightens_dwi_lowers_adc_mildly_and_leaves_the_mask():
    """Off by default; when on (own random stream) the DWI brightens in patches whose ADC drops into the range of an
    infarct's rim but not to its core, and the mask does not change."""
    assert SynthConfig().p_symmetric_cortex == 0.0
    config = dict(p_stripped=1.0, p_no_lesion=0.0, p_bright_cortex=0.0, p_receive_coil=0.0)
    plain = generate_case(SEED, 8, SynthConfig(**PROCEDURAL, **config))
    sym = generate_case(SEED, 8, SynthConfig(**PROCEDURAL, p_symmetric_cortex=1.0, **config))
    assert plain.info["symmetric_cortex"] is None and sym.info["symmetric_cortex"]["share_of_cortex"] > 0.02
    _, adc_ratio, _ = _brightened_patches(plain, sym)
    assert min(SYMMETRIC_ADC_FACTOR) - 0.03 < np.median(adc_ratio) < 0.97
