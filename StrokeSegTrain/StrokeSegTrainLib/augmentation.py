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
    theta = spatial_theta(shape, angles[chosen], scale[chosen]).to(image.device, torch.float32)  # type: ignore[arg-type]
    grid = F.affine_grid(theta, [len(chosen), channels + 1, *shape], align_corners=False)
    if bool(do_elastic[chosen].any()):
        offsets = _elastic_offsets(generator, len(chosen), shape, config.elastic_magnitude, config.elastic_grid)  # type: ignore[arg-type]
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
    """Mirror each chosen sample along each configured axis (0 = z, 1 = y, 2 = x), image and mask together.

    All axes of one sample are flipped in one ``torch.flip`` call, so each flipped sample is copied once.
    """
    n = image.shape[0]
    dims: list[list[int]] = [[] for _ in range(n)]
    for axis in config.flip_axes:
        for i in _coin(generator, n, config.flip_probability).nonzero().flatten().tolist():
            dims[i].append(1 + axis)  # axes of one sample (C, z, y, x)
    if not any(dims):
        return image, mask
    image = torch.stack([torch.flip(image[i], d) if d else image[i] for i, d in enumerate(dims)])
    mask = torch.stack([torch.flip(mask[i], d) if d else mask[i] for i, d in enumerate(dims)])
    return image, mask


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
    """Noise, blur, brightness, contrast, low resolution and gamma, each per sample (and channel) with its probability.

    Every random number is drawn whether or not its transform fires (a fixed stream per seed); only the chosen
    samples and channels are touched, in place on a single copy, because on the CPU each pass over the batch costs
    as much as a small convolution.
    """
    n, c = image.shape[:2]
    image = image.clone()
    do = _coin(generator, n, config.noise_probability)
    sigma = _uniform(generator, n, config.noise_std)
    for i in do.nonzero().flatten().tolist():
        noise = torch.randn(image.shape[1:], generator=generator).to(image.device, image.dtype)
        image[i].add_(noise, alpha=float(sigma[i]))
    do = _coin(generator, n, config.blur_probability)
    sigma = _uniform(generator, n, config.blur_sigma)
    for i in do.nonzero().flatten().tolist():
        image[i:i + 1] = gaussian_blur(image[i:i + 1], float(sigma[i]))
    do = _coin(generator, n * c, config.brightness_probability).view(n, c)
    factor = _uniform(generator, n * c, config.brightness_range).view(n, c)
    for i, ch in do.nonzero().tolist():
        image[i, ch].mul_(float(factor[i, ch]))
    do = _coin(generator, n * c, config.contrast_probability).view(n, c)
    factor = _uniform(generator, n * c, config.contrast_range).view(n, c)
    for i, ch in do.nonzero().tolist():
        channel = image[i, ch]
        low, high, mean = channel.min(), channel.max(), channel.mean()
        channel.sub_(mean).mul_(float(factor[i, ch])).add_(mean).clamp_(low, high)
    do = _coin(generator, n, config.lowres_probability)
    zoom = _uniform(generator, n, config.lowres_factor)
    shape = tuple(image.shape[2:])
    for i in do.nonzero().flatten().tolist():
        small = [max(1, int(round(s / float(zoom[i])))) for s in shape]
        coarse = F.interpolate(image[i:i + 1], size=small, mode="nearest")
        image[i:i + 1] = F.interpolate(coarse, size=shape, mode="trilinear", align_corners=False)
    do = _coin(generator, n * c, config.gamma_probability).view(n, c)
    gamma = _uniform(generator, n * c, config.gamma_range).view(n, c)
    for i, ch in do.nonzero().tolist():
        image[i, ch] = _gamma(image[i, ch], float(gamma[i, ch]))
    return image


def _gamma(channel: torch.Tensor, gamma: float) -> torch.Tensor:
    """Gamma on one channel's min-max-scaled intensities, then restore its mean and standard deviation.

    Restoring the statistics keeps the z-scored input distribution the network expects while changing the shape of
    the histogram, which is what a different scanner's contrast looks like.
    """
    low = channel.min()
    span = (channel.max() - low).clamp_min(1e-6)
    mean, std = channel.mean(), channel.std()
    out = ((channel - low) / span).clamp_(0, 1).pow_(gamma).mul_(span).add_(low)
    new_mean, new_std = out.mean(), out.std().clamp_min(1e-6)
    return out.sub_(new_mean).div_(new_std).mul_(std).add_(mean)


def _brain_edge(brain: torch.Tensor) -> torch.Tensor:
    """Brain voxels with a non-brain 6-neighbour inside the patch (the patch border itself is not an edge)."""
    outside = (1.0 - brain)[None, None]
    grown = F.max_pool3d(outside, kernel_size=3, stride=1, padding=1)[0, 0]
    return (grown > 0) & (brain > 0)


def _blob_field(generator: torch.Generator, brain: torch.Tensor, count: int, sigma: tuple[float, float],
                amplitude: tuple[float, float]) -> torch.Tensor:
    """Sum of ``count`` anisotropic Gaussian bumps (z, y, x) inside the brain of one sample.

    Half of the centres (on average) lie on the brain's edge, where real skull-stripped DWI is brightest (cortex next
    to air and bone), the others anywhere in the brain. Each bump is the outer product of three 1-D Gaussians, so a
    patch costs a few multiplications per voxel.
    """
    field = torch.zeros(brain.shape, dtype=torch.float32)
    inside = brain.nonzero()
    if inside.shape[0] == 0:
        return field
    edge = _brain_edge(brain).nonzero()
    axes = [torch.arange(n, dtype=torch.float32) for n in brain.shape]
    for _ in range(count):
        on_edge = bool(torch.rand(1, generator=generator) < 0.5) and edge.shape[0] > 0
        pool = edge if on_edge else inside
        centre = pool[int(torch.randint(pool.shape[0], (1,), generator=generator))]
        sig = _uniform(generator, 1, sigma, (3,))[0].float()
        amp = float(_uniform(generator, 1, amplitude)[0])
        g = [torch.exp(-0.5 * ((a - float(c)) / s) ** 2) for a, c, s in zip(axes, centre, sig)]
        field.add_(g[0].view(-1, 1, 1) * g[1].view(1, -1, 1) * g[2].view(1, 1, -1), alpha=amp)
    return field * brain


def _dwi_mimics(image: torch.Tensor, config: AugmentationConfig, generator: torch.Generator) -> torch.Tensor:
    """Bright blobs on the DWI channel (0) alone, inside the brain; the ADC and the mask stay as they are.

    Real scans are full of DWI brightness that is not infarct (temporal poles and orbitofrontal cortex next to air,
    the edge of a skull-stripped brain, T2 shine-through): there the ADC stays normal. A model trained only on clean
    phantoms learns "bright DWI = lesion"; these mimics break that shortcut. The brain is where either channel is
    non-zero (preprocessing sets everything outside the mask to exactly 0).
    """
    n, c = image.shape[:2]
    do = _coin(generator, n, config.dwi_mimic_probability)
    low, high = int(config.dwi_mimic_count[0]), int(config.dwi_mimic_count[1])
    counts = torch.randint(low, high + 1, (n,), generator=generator)
    if c < 2 or not bool(do.any()):
        return image
    image = image.clone()
    for i in do.nonzero().flatten().tolist():
        brain = ((image[i, 0] != 0) | (image[i, 1] != 0)).cpu().float()
        field = _blob_field(generator, brain, int(counts[i]), config.dwi_mimic_sigma, config.dwi_mimic_amplitude)
        image[i, 0].add_(field.to(image.device, image.dtype))
    return image


@torch.no_grad()
def augment_batch(image: torch.Tensor, mask: torch.Tensor, config: AugmentationConfig,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch: ``image`` (N, C, z, y, x) float, ``mask`` (N, 1, z, y, x) in {0, 1}; returns new tensors.

    Order: flips, rotation/scaling/elastic (one shared grid), DWI-only mimics, then intensity transforms on the
    image only.
    """
    image, mask = _flips(image, mask, config, generator)
    image, mask = _spatial(image, mask, config, generator)
    image = _dwi_mimics(image, config, generator)
    image = _intensity(image, config, generator)
    return image, mask
