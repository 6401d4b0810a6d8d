"""Ideal-observer detectability of each phantom lesion: the ground truth of what any detector can see.

For one lesion at one scan the signal-known-exactly / background-known-exactly (SKE/BKE) ideal observer
has the detectability index

    d'² = Σᵢ sᵢ² / σᵢ²

where ``sᵢ`` is the lesion's noise-free contribution to PET voxel ``i`` (its uptake above the tissue it
displaces, blurred by the PSF and averaged onto the PET grid, before the post-filter) and ``σᵢ`` the standard
deviation of the independent Gaussian noise added to that voxel when the lesion is absent (Barrett HH, Yao J,
Rolland JP, Myers KJ. Model observers for assessment of image quality. PNAS 1993;90:9758-9765; Barrett HH,
Myers KJ. Foundations of Image Science, Wiley 2004, §13.2). The scanner's post-filter is applied to signal and
noise alike and is invertible, so it leaves ``d'`` unchanged: no processing of the final image can do better.

``d'`` is an upper bound for every real reader or algorithm, which know neither the lesion's exact shape nor
the background under it. A single test at a known location with a 1 % false-alarm probability detects a
lesion of ``d' = 2.33`` half the time; a whole-body search at one false alarm per scan needs ``d'`` of about
4.2 for the same (a 39 L body at 8.1 mm resolution; ``LesionResponseLib.analysis.truth.whole_body_d`` and
``detectability_ceiling``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

#: ``scipy.ndimage.gaussian_filter``'s default kernel half-width, in standard deviations.
GAUSSIAN_TRUNCATE = 4.0

Box = tuple[slice, slice, slice]


def lesion_box(pieces: Sequence[tuple[Box, np.ndarray]], ct_shape: tuple[int, int, int],
               sigma_voxels: tuple[float, float, float]) -> Box:
    """The CT-grid box (z, y, x) holding every piece of a lesion and its PSF tails, with y and x starting on
    even indices and of even length, so that it maps onto whole PET voxels (2 × 2 CT voxels each)."""
    bounds = []
    for axis in range(3):
        pad = int(GAUSSIAN_TRUNCATE * sigma_voxels[axis] + 0.5) + 1
        low = max(min(box[axis].start for box, _ in pieces) - pad, 0)
        high = min(max(box[axis].stop for box, _ in pieces) + pad, ct_shape[axis])
        if axis:  # in-plane: whole 2 × 2 blocks
            low -= low % 2
            high = min(high + (high - low) % 2, ct_shape[axis] - ct_shape[axis] % 2)
        bounds.append(slice(low, high))
    return bounds[0], bounds[1], bounds[2]


def pet_signal(pieces: Sequence[tuple[Box, np.ndarray]], ct_shape: tuple[int, int, int],
               sigma_voxels: tuple[float, float, float]) -> tuple[Box, np.ndarray]:
    """The lesion's noise-free PET signal (SUV above the displaced tissue, PSF-blurred, 2 × 2-averaged).

    Args:
        pieces: (CT-grid box, SUV change the lesion made there) for each of its blobs.
        ct_shape: shape (z, y, x) of the CT grid.
        sigma_voxels: the PSF's standard deviation along (z, y, x) in CT voxels.

    Returns:
        The PET-grid box (z, y, x) and the signal on it. Equal to the difference of the whole blurred image with
        and without the lesion (the blur is linear, the box holds its support).
    """
    box = lesion_box(pieces, ct_shape, sigma_voxels)
    local = np.zeros(tuple(s.stop - s.start for s in box), np.float64)
    for piece_box, change in pieces:
        local[tuple(slice(p.start - b.start, p.stop - b.start) for p, b in zip(piece_box, box, strict=True))] += change
    blurred = ndimage.gaussian_filter(local, sigma_voxels, mode="constant", truncate=GAUSSIAN_TRUNCATE)
    nz, ny, nx = blurred.shape
    signal = blurred.reshape(nz, ny // 2, 2, nx // 2, 2).mean(axis=(2, 4))
    pet_box = (box[0], slice(box[1].start // 2, box[1].stop // 2), slice(box[2].start // 2, box[2].stop // 2))
    return pet_box, signal


def ideal_snr(signal: np.ndarray, noise_sd: np.ndarray) -> float:
    """SKE/BKE ideal-observer detectability ``d' = sqrt(Σ s² / σ²)`` (module docstring) of a signal (SUV) on
    voxels with independent Gaussian noise of standard deviation ``noise_sd`` (SUV; same shape)."""
    return float(np.sqrt(np.sum(np.square(signal) / np.square(np.maximum(noise_sd, 1e-12)))))


def lesion_snrs(pieces: dict[int, list[tuple[Box, np.ndarray]]], ct_shape: tuple[int, int, int],
                sigma_voxels: tuple[float, float, float], noise_free_pet: np.ndarray,
                noise_sd_of: Callable[[np.ndarray, int], np.ndarray]) -> dict[int, float]:
    """Ideal-observer ``d'`` of every lesion of one scan.

    Args:
        pieces: lesion id → its blobs' (CT-grid box, SUV change) pieces.
        ct_shape, sigma_voxels: as :func:`pet_signal`.
        noise_free_pet: the blurred, noise-free PET (SUV) with every lesion, PET grid (z, y, x).
        noise_sd_of: ``(noise-free SUV on a PET box, its first slice) → noise standard deviation there``; the
            lesion's own signal is removed first (the noise of the scan without it: the null hypothesis).
    """
    snrs = {}
    for lesion_id, parts in pieces.items():
        pet_box, signal = pet_signal(parts, ct_shape, sigma_voxels)
        background = noise_free_pet[pet_box] - signal
        snrs[lesion_id] = ideal_snr(signal, noise_sd_of(background, pet_box[0].start))
    return snrs
