"""Batch augmentation in torch, on whatever device the batch lives on (the GPU when there is one).

Spatial transforms (rotation, scaling, elastic deformation) are applied with ONE ``grid_sample`` call on the image and
the mask stacked as channels of the same tensor, so the two cannot drift apart; the mask is interpolated linearly and
thresholded at 0.5, which keeps its volume closer to the truth than nearest-neighbour sampling. Flips use
``torch.flip`` on both (exact). Intensity transforms then act on the image only, per sample and channel.

All random numbers are drawn from a CPU ``torch.Generator`` passed in by the caller and only then moved to the device,
so a batch's augmentation depends on its seed alone: identical on CPU and GPU, and reproducible after a resume.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import AugmentationConfig


def _uniform(generator: torch.Generator, n: int, bounds: tuple[float, float], shape: tuple[int, ...] = ()
             ) -> torch.Tensor:
    """``n`` (x ``shape``) samples from U(bounds) on the CPU generator."""
    low, high = float(bounds[0]), float(bounds[1])
    return low + (high - low) * torch.rand((n, *shape), generator=generator, dtype=torch.float64)


def _coin(generator: torch.Generator, n: int, probability: float) -> torch.Tensor:
    """Boolean (n,) tensor: which samples receive a transform of the given probability."""
    return torch.rand(n, generator=generator, dtype=torch.float64) < probability


def rotation_matrix(angles_rad: torch.Tensor) -> torch.Tensor:
    """(N, 3) angles about the x, y, z axes -> (N, 3, 3) rotations acting on (x, y, z) vectors."""
    cx, cy, cz = torch.cos(angles_rad).unbind(-1)
    sx, sy, sz = torch.sin(angles_rad).unbind(-1)
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).view(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).view(-1, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ ry @ rx


def spatial_theta(shape_zyx: tuple[int, int, int], rotation_rad: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``affine_grid`` matrices (N, 3, 4) for a rotation and isotropic zoom about the patch centre.

    ``affine_grid`` works in normalised coordinates, in which a non-cubic patch is squashed; rotating there would
    shear the anatomy. The rotation is therefore built in voxel units (isotropic at the network spacing) and
    conjugated into normalised units: ``A = D^-1 (R / s) D`` with D the half-extents in (x, y, z) order. ``s > 1``
    magnifies the content.
    """
    half = torch.tensor([shape_zyx[2] / 2.0, shape_zyx[1] / 2.0, shape_zyx[0] / 2.0], dtype=torch.float64)
    matrix = rotation_matrix(rotation_rad) / scale.view(-1, 1, 1)
    matrix = torch.diag(1.0 / half) @ matrix @ torch.diag(half)
    return torch.cat([matrix, torch.zeros(matrix.shape[0], 3, 1, dtype=matrix.dtype)], dim=2)


def _elastic_offsets(generator: torch.Generator, n: int, shape_zyx: tuple[int, int, int], magnitude: float,
                     control_points: int) -> torch.Tensor:
    """Smooth random displacement (n, z, y, x, 3) in normalised units: coarse Gaussian noise upsampled trilinearly."""
    coarse = torch.randn((n, 3, control_points, control_points, control_points), generator=generator) * magnitude
    dense = F.interpolate(coarse, size=shape_zyx, mode="trilinear", align_corners=True)
    return dense.permute(0, 2, 3, 4, 1)


def _spatial(image: torch.Tensor, mask: torch.Tensor, config: AugmentationConfig, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation, scaling and elastic deformation through one shared sampling grid; untouched samples stay exact."""
    n, channels = image.shape[:2]
    shape = tuple(image.shape[2:])
    do_rot = _coin(generator, n, config.rotation_probability)
    angles = torch.deg2rad(_uniform(generator, n, config.rotation_degrees, (3,))) * do_rot.view(-1, 1)
    do_scale = _coin(generator, n, config.scale_probability)
    scale = torch.where(do_scale, _uniform(generator, n, config.scale_range), torch.ones(n, dtype=torch.float64))
    do_elastic = _coin(generator, n, config.elastic_probability)
    chosen = (do_rot | do_scale | do_elastic).nonzero().flatten()
    if chosen.numel() == 0:
        return image, mask
    theta = spatial_theta(shape, angles[chosen], scale[chosen]).to(image.device, torch.float32)
    grid = F.affine_grid(theta, [len(chosen), channels + 1, *shape], align_corners=False)
    if bool(do_elastic[chosen].any()):
        offsets = _elastic_offsets(generator, len(chosen), shape, config.elastic_magnitude, config.elastic_grid)
        offsets = offsets * do_elastic[chosen].view(-1, 1, 1, 1, 1)
        grid = grid + offsets.to(grid.device, grid.dtype)
    index = chosen.to(image.device)
    stacked = torch.cat([image[index], mask[index].to(image.dtype)], dim=1)
    warped = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    image, mask = image.clone(), mask.clone()
    image[index] = warped[:, :channels]
    mask[index] = (warped[:, channels:] >= 0.5).to(mask.dtype)
    return image, mask


def _flips(image: torch.Tensor, mask: torch.Tensor, config: AugmentationConfig, generator: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror each chosen sample along each configured axis (0 = z, 1 = y, 2 = x), image and mask together."""
    n = image.shape[0]
    for axis in config.flip_axes:
        chosen = _coin(generator, n, config.flip_probability).nonzero().flatten().to(image.device)
        if chosen.numel():
            image = image.clone()
            mask = mask.clone()
            image[chosen] = torch.flip(image[chosen], dims=(2 + axis,))
            mask[chosen] = torch.flip(mask[chosen], dims=(2 + axis,))
    return image, mask


def _per_sample(values: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """(N, C) values shaped to broadcast over (N, C, z, y, x) on the image's device."""
    return values.to(image.device, image.dtype).view(*values.shape, 1, 1, 1)


def gaussian_blur(volume: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, z, y, x) with ``sigma`` voxels (replicate padding)."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=volume.dtype, device=volume.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = volume.shape[1]
    out = volume
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = kernel.numel()
        weight = kernel.view(1, 1, *shape).repeat(channels, 1, 1, 1, 1)
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        out = F.conv3d(F.pad(out, pad, mode="replicate"), weight, groups=channels)
    return out


def _intensity(image: torch.Tensor, config: AugmentationConfig, generator: torch.Generator) -> torch.Tensor:
    """Noise, blur, brightness, contrast, low resolution and gamma, each per sample (and channel) with its probability."""
    n, c = image.shape[:2]
    image = image.clone()
    do = _coin(generator, n, config.noise_probability)
    sigma = _uniform(generator, n, config.noise_std)
    if bool(do.any()):
        noise = torch.randn(image.shape, generator=generator).to(image.device, image.dtype)
        image = image + noise * _per_sample((sigma * do).view(n, 1).expand(n, c), image)
    do = _coin(generator, n, config.blur_probability)
    sigma = _uniform(generator, n, config.blur_sigma)
    for i in do.nonzero().flatten().tolist():
        image[i:i + 1] = gaussian_blur(image[i:i + 1], float(sigma[i]))
    do = _coin(generator, n * c, config.brightness_probability).view(n, c)
    factor = torch.where(do, _uniform(generator, n * c, config.brightness_range).view(n, c), 1.0)
    image = image * _per_sample(factor, image)
    do = _coin(generator, n * c, config.contrast_probability).view(n, c)
    factor = _uniform(generator, n * c, config.contrast_range).view(n, c)
    if bool(do.any()):
        mean = image.mean(dim=(2, 3, 4), keepdim=True)
        low = image.amin(dim=(2, 3, 4), keepdim=True)
        high = image.amax(dim=(2, 3, 4), keepdim=True)
        contrasted = ((image - mean) * _per_sample(factor, image) + mean).clamp(low, high)
        image = torch.where(_per_sample(do, image).bool(), contrasted, image)
    do = _coin(generator, n, config.lowres_probability)
    zoom = _uniform(generator, n, config.lowres_factor)
    shape = tuple(image.shape[2:])
    for i in do.nonzero().flatten().tolist():
        small = [max(1, int(round(s / float(zoom[i])))) for s in shape]
        coarse = F.interpolate(image[i:i + 1], size=small, mode="nearest")
        image[i:i + 1] = F.interpolate(coarse, size=shape, mode="trilinear", align_corners=False)
    do = _coin(generator, n * c, config.gamma_probability).view(n, c)
    gamma = _uniform(generator, n * c, config.gamma_range).view(n, c)
    if bool(do.any()):
        image = torch.where(_per_sample(do, image).bool(), _gamma(image, _per_sample(gamma, image)), image)
    return image


def _gamma(image: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Gamma on the min-max-scaled intensities, then restore each channel's mean and standard deviation.

    Restoring the statistics keeps the z-scored input distribution the network expects while changing the shape of
    the histogram, which is what a different scanner's contrast looks like.
    """
    dims = (2, 3, 4)
    low = image.amin(dim=dims, keepdim=True)
    span = (image.amax(dim=dims, keepdim=True) - low).clamp_min(1e-6)
    mean, std = image.mean(dim=dims, keepdim=True), image.std(dim=dims, keepdim=True)
    out = ((image - low) / span).clamp(0, 1).pow(gamma) * span + low
    new_mean, new_std = out.mean(dim=dims, keepdim=True), out.std(dim=dims, keepdim=True).clamp_min(1e-6)
    return (out - new_mean) / new_std * std + mean


@torch.no_grad()
def augment_batch(image: torch.Tensor, mask: torch.Tensor, config: AugmentationConfig,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch: ``image`` (N, C, z, y, x) float, ``mask`` (N, 1, z, y, x) in {0, 1}; returns new tensors.

    Order: flips, rotation/scaling/elastic (one shared grid), then intensity transforms on the image only.
    """
    image, mask = _flips(image, mask, config, generator)
    image, mask = _spatial(image, mask, config, generator)
    image = _intensity(image, config, generator)
    return image, mask
