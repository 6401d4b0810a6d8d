"""A small synthetic DOTATATE PET generator used to train and test the segmentation model.

It paints analytic organs with typical [68Ga]DOTATATE SUVs (DOMAIN.md §5) and spherical/ellipsoidal
lesions (liver, nodes, bone, pancreas) into a torso-and-head field of view, then blurs (PET resolution)
and adds signal-dependent noise. Acquisition parameters vary per seed (voxel size 2-5.5 mm, FWHM 5-8 mm,
noise level), standing in for scanner vendors. Training seeds are 1000-1999; tests use 1-99.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

ORGAN_LABELS: dict[str, int] = {
    "liver": 1, "spleen": 2, "kidney": 3, "adrenal": 4, "pituitary": 5, "bladder": 6, "bowel": 7,
    "pancreas": 8, "heart": 9, "salivary": 10,
}
FOV_MM = (480.0, 320.0, 560.0)  # x (right-left), y (anterior-posterior), z (feet-head) extent


@dataclass
class SyntheticScan:
    """One synthetic PET: SUV image, true lesion labels (1..N) and organ labels on the same grid."""

    pet_suv: sitk.Image
    lesions: sitk.Image
    organs: sitk.Image


def _ellipsoid(coords: tuple[np.ndarray, ...], centre, semi) -> np.ndarray:
    x, y, z = coords
    return ((x - centre[0]) / semi[0]) ** 2 + ((y - centre[1]) / semi[1]) ** 2 + (
        (z - centre[2]) / semi[2]) ** 2 <= 1.0


def _organs(rng: np.random.Generator) -> list[tuple[str, tuple, tuple, float]]:
    """(name, centre mm, semi-axes mm, SUV) of each physiological structure for one patient."""
    j = lambda: rng.uniform(-12, 12)  # noqa: E731 - position jitter, mm
    s = lambda: rng.uniform(0.8, 1.25)  # noqa: E731 - size factor
    liver = rng.uniform(3.0, 9.0)
    items = [
        ("liver", (-70 + j(), j(), j()), (90 * s(), 75 * s(), 70 * s()), liver),
        ("spleen", (95 + j(), 40 + j(), 10 + j()), (35 * s(), 45 * s(), 55 * s()), rng.uniform(12, 32)),
        ("pancreas", (-10 + j(), 20, -30 + j()), (15 * s(), 12, 12 * s()), rng.uniform(4, 10)),
        ("pituitary", (0, -10 + j() / 3, 300 + j() / 3), (5, 5, 5), rng.uniform(5, 11)),
        ("bladder", (j(), -10 + j(), -230 + j()), (40 * s(), 35 * s(), 35 * s()), rng.uniform(8, 80)),
        ("salivary", (-40, j() / 2, 250), (14, 18, 14), rng.uniform(2, 6)),
        ("salivary", (40, j() / 2, 250), (14, 18, 14), rng.uniform(2, 6)),
    ]
    for side in (-1, 1):
        items.append(("kidney", (side * 75 + j(), 55 + j() / 2, -60 + j()), (30 * s(), 28, 55 * s()),
                      rng.uniform(10, 20)))
        items.append(("adrenal", (side * 50 + j() / 2, 45, -5 + j() / 2), (8, 12, 15), rng.uniform(6, 15)))
    for _ in range(rng.integers(4, 12)):
        items.append(("bowel", (rng.uniform(-90, 90), rng.uniform(-60, 20), rng.uniform(-190, -90)),
                      tuple(rng.uniform(10, 25, 3)), rng.uniform(2, 5)))
    return items


def _lesion_sites(rng: np.random.Generator, organs) -> tuple[np.ndarray, float]:
    """A random lesion centre (mm) and the SUV of the tissue around it."""
    site = rng.choice(["liver", "node", "bone", "pancreas"], p=[0.45, 0.3, 0.15, 0.1])
    if site in ("liver", "pancreas"):
        _, c, semi, suv = next(o for o in organs if o[0] == site)
        return np.asarray(c) + rng.uniform(-0.6, 0.6, 3) * np.asarray(semi), suv
    if site == "bone":
        return np.array([rng.uniform(-10, 10), 80, rng.uniform(-240, 220)]), 1.0
    return np.array([rng.uniform(-120, 120), rng.uniform(-40, 60), rng.uniform(-200, 180)]), 0.6


def synthetic_scan(seed: int, n_lesions: tuple[int, int] = (3, 18)) -> SyntheticScan:
    """Generate one synthetic scan for ``seed`` (deterministic); ``n_lesions`` = (min, max) count."""
    rng = np.random.default_rng(seed)
    spacing = (rng.uniform(2.0, 5.5),) * 2 + (rng.uniform(2.0, 5.0),)
    shape = tuple(int(round(e / s)) for e, s in zip(FOV_MM, spacing, strict=True))
    axes = [(np.arange(n) + 0.5) * sp - e / 2 for n, sp, e in zip(shape, spacing, FOV_MM, strict=True)]
    coords = np.meshgrid(*axes, indexing="ij")  # x, y, z in mm, arrays indexed [x, y, z]
    act = np.zeros(shape, np.float32)
    organ_map = np.zeros(shape, np.uint16)
    body = ((coords[0] / 170) ** 2 + (coords[1] / 110) ** 2 <= 1) & (coords[2] > -270) & (coords[2] < 200)
    act[body] = rng.uniform(0.4, 0.8)
    act[_ellipsoid(coords, (0, 0, 300), (80, 95, 90))] = rng.uniform(0.3, 0.6)
    act[((coords[0] / 55) ** 2 + (coords[1] / 55) ** 2 <= 1) & (coords[2] >= 200) & (coords[2] < 230)] = 0.6
    for side in (-1, 1):
        act[_ellipsoid(coords, (side * 80, 0, 120), (60, 70, 100))] = rng.uniform(0.2, 0.4)
    act[((coords[0] / 18) ** 2 + ((coords[1] - 80) / 18) ** 2 <= 1) & body] = rng.uniform(0.6, 1.5)
    organs = _organs(rng)
    for name, centre, semi, suv in organs:
        mask = _ellipsoid(coords, centre, semi)
        act[mask] = suv
        organ_map[mask] = ORGAN_LABELS[name]
    act[_ellipsoid(coords, (20, -20, 60), (50, 45, 50))] = rng.uniform(1.2, 2.0)
    lesion_map = np.zeros(shape, np.uint16)
    label = 0
    for _ in range(rng.integers(n_lesions[0], n_lesions[1] + 1)):
        centre, tissue = _lesion_sites(rng, organs)
        radius = (3 * np.exp(rng.uniform(np.log(0.15), np.log(40))) * 1000 / (4 * np.pi)) ** (1 / 3)
        mask = _ellipsoid(coords, centre, radius * rng.uniform(0.75, 1.3, 3))
        if not mask.any() or (lesion_map[mask] > 0).any():
            continue
        label += 1
        act[mask] = max(rng.uniform(8, 60), tissue * rng.uniform(1.8, 4.0))
        lesion_map[mask] = label
    fwhm = rng.uniform(5.0, 8.0)
    blurred = ndimage.gaussian_filter(act, [fwhm / 2.355 / s for s in spacing])
    noise = rng.normal(size=shape).astype(np.float32)
    noise = ndimage.gaussian_filter(noise, 0.7) * 2.0  # correlated noise, unit-ish variance
    pet = np.clip(blurred + rng.uniform(0.1, 0.3) * np.sqrt(np.clip(blurred, 0, None)) * noise, 0, None)
    return SyntheticScan(*(_to_image(a, spacing) for a in (pet.astype(np.float32), lesion_map, organ_map)))


def _to_image(array: np.ndarray, spacing) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(-e / 2 + s / 2 for e, s in zip(FOV_MM, spacing, strict=True)))
    return image
