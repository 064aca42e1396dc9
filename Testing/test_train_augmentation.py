"""Augmentation: image and mask stay aligned, the geometry is right on non-cubic patches, seeds reproduce."""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from StrokeSegTrainLib.augmentation import augment_batch, spatial_theta
from StrokeSegTrainLib.config import AugmentationConfig

NO_INTENSITY = dict(gamma_probability=0.0, brightness_probability=0.0, contrast_probability=0.0,
                    noise_probability=0.0, blur_probability=0.0, lowres_probability=0.0,
                    dwi_mimic_probability=0.0)


def _cube_batch(n: int = 6, shape: tuple[int, int, int] = (24, 32, 40)) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.zeros(n, 2, *shape)
    mask = torch.zeros(n, 1, *shape)
    image[:, 0, 6:14, 8:20, 12:30] = 3.0
    image[:, 1, 6:14, 8:20, 12:30] = -3.0
    mask[:, :, 6:14, 8:20, 12:30] = 1.0
    return image, mask


def test_bright_cube_and_mask_stay_aligned() -> None:
    config = AugmentationConfig(flip_probability=0.5, rotation_probability=1.0, rotation_degrees=(-45, 45),
                                scale_probability=1.0, elastic_probability=0.5, elastic_magnitude=0.05,
                                **NO_INTENSITY)
    image, mask = _cube_batch()
    out_image, out_mask = augment_batch(image, mask, config, torch.Generator().manual_seed(1))
    assert set(out_mask.unique().tolist()) <= {0.0, 1.0}
    for i in range(len(image)):
        moved = (out_mask[i] != mask[i]).float().mean().item()
        assert moved > 0.01, "the transform did nothing; the test would prove nothing"
        bright = out_image[i, 0] >= 1.5
        dark = out_image[i, 1] <= -1.5
        assert torch.equal(bright, out_mask[i, 0].bool())
        assert torch.equal(dark, out_mask[i, 0].bool())
    # The cube's volume survives a rotation about the centre up to interpolation and zoom.
    assert out_mask.sum() > 0


def test_intensity_augmentation_keeps_the_mask_and_bright_region() -> None:
    config = AugmentationConfig(flip_probability=0.0, rotation_probability=0.0, scale_probability=0.0,
                                gamma_probability=1.0, brightness_probability=1.0, contrast_probability=1.0,
                                noise_probability=0.0, blur_probability=0.0, lowres_probability=0.0,
                                dwi_mimic_probability=0.0)
    image, mask = _cube_batch()
    out_image, out_mask = augment_batch(image, mask, config, torch.Generator().manual_seed(2))
    assert torch.equal(out_mask, mask)
    assert not torch.equal(out_image, image)
    for i in range(len(image)):
        channel = out_image[i, 0]
        threshold = (channel.max() + channel.min()) / 2
        assert torch.equal(channel > threshold, mask[i, 0].bool())


def test_rotation_is_rigid_on_non_cubic_patch() -> None:
    # A bar along x in a (z, y, x) = (8, 32, 48) patch, rotated 90 degrees in-plane, must become a bar of the same
    # length along y: rotating in normalised coordinates would squash it by 32/48.
    shape = (8, 32, 48)
    volume = torch.zeros(1, 1, *shape)
    volume[0, 0, 3:5, 15:17, 14:34] = 1.0  # 20 voxels long along x, centred
    theta = spatial_theta(shape, torch.tensor([[0.0, 0.0, math.pi / 2]], dtype=torch.float64),
                          torch.ones(1, dtype=torch.float64)).float()
    grid = F.affine_grid(theta, [1, 1, *shape], align_corners=False)
    rotated = F.grid_sample(volume, grid, align_corners=False) >= 0.5
    ys = rotated[0, 0].any(dim=(0, 2)).nonzero().flatten()
    xs = rotated[0, 0].any(dim=(0, 1)).nonzero().flatten()
    assert len(ys) == 20 and len(xs) == 2
    assert abs((ys.float().mean() - 15.5).item()) <= 0.5


def test_scaling_magnifies() -> None:
    shape = (16, 16, 16)
    volume = torch.zeros(1, 1, *shape)
    volume[0, 0, 6:10, 6:10, 6:10] = 1.0
    theta = spatial_theta(shape, torch.zeros(1, 3, dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64))
    grid = F.affine_grid(theta.float(), [1, 1, *shape], align_corners=False)
    zoomed = F.grid_sample(volume, grid, align_corners=False) >= 0.5
    assert abs(zoomed.sum().item() - 8 ** 3) <= 0.1 * 8 ** 3  # 4^3 voxels doubled per axis (edges sit at 0.5)


def test_same_seed_same_result_and_flip_exact() -> None:
    config = AugmentationConfig()
    torch.manual_seed(0)
    image, mask = torch.randn(3, 2, 16, 16, 16), (torch.rand(3, 1, 16, 16, 16) > 0.8).float()
    a = augment_batch(image, mask, config, torch.Generator().manual_seed(5))
    b = augment_batch(image, mask, config, torch.Generator().manual_seed(5))
    c = augment_batch(image, mask, config, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    flip_only = dataclasses.replace(AugmentationConfig(flip_probability=1.0, flip_axes=(2,), rotation_probability=0,
                                                       scale_probability=0, **NO_INTENSITY))
    flipped_image, flipped_mask = augment_batch(image, mask, flip_only, torch.Generator().manual_seed(0))
    assert torch.equal(flipped_image, image.flip(4)) and torch.equal(flipped_mask, mask.flip(4))


def test_dwi_mimics_brighten_only_the_dwi_inside_the_brain_and_leave_the_label() -> None:
    """The mimic teaches "bright DWI with normal ADC is not infarct": DWI up, ADC and mask untouched, nothing
    outside the brain (where preprocessing leaves exact zeros), and the same seed gives the same blobs."""
    config = AugmentationConfig(flip_probability=0.0, rotation_probability=0.0, scale_probability=0.0,
                                **{**NO_INTENSITY, "dwi_mimic_probability": 1.0})
    shape = (24, 32, 40)
    gen = torch.Generator().manual_seed(3)
    image = torch.zeros(4, 2, *shape)
    image[:, :, 4:20, 6:26, 8:32] = torch.randn(4, 2, 16, 20, 24, generator=gen)
    brain = image[0, 0] != 0
    mask = torch.zeros(4, 1, *shape)
    mask[:, :, 8:12, 10:14, 12:16] = 1.0
    out, out_mask = augment_batch(image, mask, config, torch.Generator().manual_seed(5))
    again, _ = augment_batch(image, mask, config, torch.Generator().manual_seed(5))
    assert torch.equal(out, again)
    assert torch.equal(out_mask, mask)
    assert torch.equal(out[:, 1], image[:, 1])
    added = out[:, 0] - image[:, 0]
    assert torch.all(added >= 0)
    assert torch.all(added[:, ~brain] == 0)
    for i in range(4):  # every sample got at least one blob of at least the minimum amplitude at its centre
        assert added[i].max() >= config.dwi_mimic_amplitude[0] * 0.99


def test_brain_edge_is_where_brain_meets_background_not_the_patch_border() -> None:
    from StrokeSegTrainLib.augmentation import _brain_edge

    brain = torch.zeros(10, 12, 14)
    brain[2:8, 3:9, :] = 1.0  # a slab that runs through the patch along x
    edge = _brain_edge(brain)
    assert edge[2, 5, 5] and edge[7, 5, 5] and edge[5, 3, 5] and edge[5, 8, 5]
    assert not edge[5, 5, 5] and not edge[0, 0, 0]
    assert not edge[5, 5, 0] and not edge[5, 5, 13]  # cut by the patch, not by the brain's surface
