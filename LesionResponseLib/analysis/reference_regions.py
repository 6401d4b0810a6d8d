"""Reference regions of normal organ uptake per time point: a sphere in the liver and one in the spleen, placed
automatically on the organs that ``segmentation.organs`` finds, measured on the SUV PET, and movable by a reader.

**Placement rule.** Normal tissue is the organ found on PET/CT minus every lesion-ROI and minus *focal uptake*; for
the liver only its part on the patient's right of the body's midline (PERCIST 1.0: "a 3-cm-diameter spherical ROI
in the normal right lobe of the liver", Wahl et al., J Nucl Med 2009;50:122S-150S). Focal uptake is where the
mean SUV in a 1 mL sphere (the SUVpeak kernel) exceeds the organ's median 1 mL mean by more than
:data:`FOCAL_UPTAKE_SD` robust SDs (1.4826 × the median absolute deviation of those means over the organ): a small
lesion the segmentation missed, whose blurred uptake stays inside the organ's uptake band (a 0.6 mL lesion of
2.6 × the liver's uptake raises a 1 mL mean by ~50 %, 5-6 SDs, and would add ~5 % to a sphere around it).
The sphere's centre is the voxel of normal tissue farthest from anything else (lesion-ROI, focal uptake, organ
edge, vessel or lesion outside the liver's uptake band: the organ's holes): the deepest point. It is placed only
when that depth is at least the sphere's radius plus a margin of
:data:`~LesionResponseLib.analysis.quantify.PVC_INNER_FWHM` × the PET's FWHM (1.5 FWHM: beyond it less than 0.1 %
of a lesion's or of the organ edge's spill-over is left), so neither a lesion's spill-out nor the edge's partial
volume reaches the sphere. Otherwise - a liver full of lesions, no spleen (splenectomy, outside the
field of view) - nothing is placed and the region says why (``ReferenceRegion.warnings``); the ratios to it are
then empty, never computed on tumour.

**Measure.** SUVmean and SD over the PET voxels whose centres lie within the sphere; volume = their number ×
voxel volume (a discretised 3 cm sphere on 4 mm voxels holds ~250 voxels, 16 mL against the sphere's 14.1 mL).
Its error is its noise (the mean of ~250 voxels correlated by the PSF has an SD of ~2-2.5 % of the liver's
uptake at a clinical count level) and a missed lesion too faint to stand out as focal uptake (the reader moves the
sphere). The centre is chosen by geometry (the depth of normal tissue), never by the PET values of candidate
spheres; only focal excesses of more than :data:`FOCAL_UPTAKE_SD` SDs are kept out, so it does not select
noise-low positions (measured by ``benchmarks/bench_reference_bias.py``: docs/reference-regions-and-burden.md).

**Checks** (also of a sphere a reader moved): the share of its voxels inside the organ found on PET/CT
(``organ_share``; under :data:`MIN_ORGAN_SHARE` it is flagged), its distance to the nearest lesion-ROI (flagged
within the margin), and the spleen's uptake above the liver's (the spleen is the hottest organ in
[68Ga]DOTATATE, docs/DOMAIN.md §5; if not, the sphere may be on something else).
"""

from __future__ import annotations

import itertools

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from LesionResponseLib.analysis.quantify import PVC_INNER_FWHM, sphere_means
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.datamodel import ReferenceRegion
from LesionResponseLib.imaging import robust_median_sd
from LesionResponseLib.segmentation.organs import Organs, axis_mm

#: Share of a reference sphere's voxels that must lie inside the organ found on PET/CT (a reader's sphere
#: half-way out of the liver measures the edge's partial volume, not the liver).
MIN_ORGAN_SHARE = 0.9
#: Focal uptake: a 1 mL sphere mean above the organ's median by more than this many robust SDs. Noise alone
#: exceeds 4 SDs of a Gaussian once in ~30,000 independent spheres (a liver holds ~1,500 1 mL spheres), so the rule
#: keeps out hardly any normal tissue; a missed lesion adding 2-3 SUV·mL to the liver exceeds it.
FOCAL_UPTAKE_SD = 4.0


def margin_mm(params: AnalysisParameters) -> float:
    """Distance (mm) a reference sphere keeps from every lesion-ROI and organ edge: 1.5 × the PET's FWHM."""
    return PVC_INNER_FWHM * params.quantification.psf_fwhm_mm


def diameter_mm(params: AnalysisParameters, organ: str) -> float:
    """The configured sphere diameter (mm) of ``organ``'s reference region."""
    return float(getattr(params.reference, f"{organ}_diameter_mm"))


def place_reference_regions(pet_suv: sitk.Image, labels: sitk.Image, organs: Organs, timepoint: int,
                            params: AnalysisParameters) -> list[ReferenceRegion]:
    """The liver and spleen reference regions of one time point (module docstring), placed or not."""
    lesions = sitk.GetArrayViewFromImage(labels) > 0
    regions = []
    for organ in ("liver", "spleen"):
        diameter = diameter_mm(params, organ)
        if organ in organs.missing or not organs.mask(organ).any():
            reason = organs.missing.get(organ, f"no {organ} found on PET/CT")
            regions.append(ReferenceRegion(timepoint, organ, False, diameter, warnings=[f"not placed: {reason}"]))
            continue
        normal = organs.mask(organ) & ~lesions
        if organ == "liver":
            normal &= (axis_mm(pet_suv, 0) < organs.midline_x_mm())[None, None, :]  # the patient's right
        normal &= ~focal_uptake(pet_suv, normal)
        deepest, depth = _deepest_point(normal, pet_suv.GetSpacing()[::-1])
        needed = diameter / 2 + margin_mm(params)
        if depth < needed:
            where = "normal right-lobe liver" if organ == "liver" else "normal spleen"
            regions.append(ReferenceRegion(timepoint, organ, False, diameter, warnings=[
                f"not placed: no {diameter:g} mm sphere fits in {where} with {margin_mm(params):.0f} mm to every "
                f"lesion-ROI, focal uptake and edge (the deepest point is {depth:.0f} mm inside, {needed:.0f} mm needed; "
                f"{'a liver full of lesions?' if organ == 'liver' else 'a small or diseased spleen?'}). Place it "
                f"in the review if normal {organ} is left."]))
            continue
        centre = pet_suv.TransformIndexToPhysicalPoint([int(i) for i in deepest[::-1]])
        regions.append(measure_sphere(pet_suv, labels, organs, timepoint, organ, centre, diameter, params))
    return check_spleen_above_liver(regions)


def focal_uptake(pet_suv: sitk.Image, tissue: np.ndarray) -> np.ndarray:
    """Bool (z, y, x) mask of the voxels of ``tissue`` whose 1 mL sphere mean SUV exceeds the tissue's median 1 mL
    mean by more than :data:`FOCAL_UPTAKE_SD` robust SDs (module docstring); none when the tissue is empty or
    uniform."""
    focal = np.zeros(tissue.shape, bool)
    voxels = np.nonzero(tissue)
    if voxels[0].size < 2:
        return focal
    means = sphere_means(sitk.GetArrayViewFromImage(pet_suv), voxels, pet_suv.GetSpacing())
    median, spread = robust_median_sd(means)
    if spread > 0:
        focal[voxels] = means > median + FOCAL_UPTAKE_SD * spread
    return focal


def _deepest_point(mask: np.ndarray, spacing: tuple[float, ...]) -> tuple[tuple[int, ...], float]:
    """The (z, y, x) index of ``mask``'s voxel farthest from any voxel outside it, and that distance (mm);
    computed on the mask's bounding box grown by one voxel (outside it is outside the mask)."""
    found = np.nonzero(mask)
    if found[0].size == 0:
        return (0, 0, 0), 0.0
    box = tuple(slice(max(0, int(f.min()) - 1), int(f.max()) + 2) for f in found)
    depth = ndimage.distance_transform_edt(np.pad(mask[box], 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    local = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return tuple(int(i + b.start) for i, b in zip(local, box, strict=True)), float(depth[local])


def sphere_mask(grid: sitk.Image, centre_mm: tuple[float, float, float], diameter: float) -> np.ndarray:
    """Bool (z, y, x) mask of the voxels of ``grid`` whose centres lie within the sphere (LPS centre, mm);
    worked out on the sphere's bounding box in index space."""
    size = np.asarray(grid.GetSize())
    mask = np.zeros(size[::-1], bool)
    r = diameter / 2.0
    corners = np.array([grid.TransformPhysicalPointToContinuousIndex(tuple(np.asarray(centre_mm) + offset))
                        for offset in itertools.product((-r, r), repeat=3)])
    low = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    high = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, size)
    if np.any(high <= low):
        return mask
    index = np.stack(np.meshgrid(*(np.arange(a, b) for a, b in zip(low, high, strict=True)), indexing="ij"), -1)
    direction = np.asarray(grid.GetDirection()).reshape(3, 3)
    points = np.asarray(grid.GetOrigin()) + (index * np.asarray(grid.GetSpacing())) @ direction.T
    inside = np.sum((points - np.asarray(centre_mm)) ** 2, axis=-1) <= r * r
    mask[low[2]:high[2], low[1]:high[1], low[0]:high[0]] = inside.transpose(2, 1, 0)
    return mask


def measure_sphere(pet_suv: sitk.Image, labels: sitk.Image, organs: Organs | None, timepoint: int, organ: str,
                   centre_mm: tuple[float, float, float], diameter: float, params: AnalysisParameters,
                   source: str = "automatic") -> ReferenceRegion:
    """The reference region of ``organ`` as a sphere at ``centre_mm`` (LPS) measured on ``pet_suv``, with its
    checks (module docstring). ``organs`` None: the organ share is unknown (and said so)."""
    inside = sphere_mask(pet_suv, centre_mm, diameter)
    centre = tuple(float(c) for c in centre_mm)
    if not inside.any():
        return ReferenceRegion(timepoint, organ, False, diameter, centre, source=source,
                               warnings=["not placed: the sphere lies outside the PET"])
    values = sitk.GetArrayViewFromImage(pet_suv)[inside].astype(np.float64)
    voxel_ml = float(np.prod(pet_suv.GetSpacing())) / 1000.0
    region = ReferenceRegion(timepoint, organ, True, diameter, centre, suv_mean=float(values.mean()),
                             suv_sd=float(values.std(ddof=1)) if values.size > 1 else 0.0,
                             volume_ml=float(values.size * voxel_ml), source=source)
    if organs is None:
        region.warnings.append(f"not checked: no organ map to tell whether it lies in the {organ}")
    else:
        region.organ_share = float(organs.mask(organ)[inside].mean())
        if region.organ_share < MIN_ORGAN_SHARE:
            region.warnings.append(f"{100 * (1 - region.organ_share):.0f} % of the sphere lies outside the {organ} "
                                   "found on PET/CT")
    gap = _gap_to_lesions(sitk.GetArrayViewFromImage(labels), pet_suv, centre, diameter)
    if gap is not None and gap < margin_mm(params):
        region.warnings.append(f"a lesion-ROI lies {max(gap, 0.0):.0f} mm from the sphere (under the "
                               f"{margin_mm(params):.0f} mm its uptake needs to fade)")
    return region


def _gap_to_lesions(labels: np.ndarray, grid: sitk.Image, centre: tuple[float, ...], diameter: float
                    ) -> float | None:
    """Distance (mm) from the sphere's surface to the nearest lesion-ROI voxel centre (negative inside), or None."""
    found = np.nonzero(labels)
    if found[0].size == 0:
        return None
    points = [axis_mm(grid, axis)[found[2 - axis]] - centre[axis] for axis in range(3)]
    return float(np.sqrt(np.min(sum(p**2 for p in points)))) - diameter / 2


def check_spleen_above_liver(regions: list[ReferenceRegion]) -> list[ReferenceRegion]:
    """Flag a spleen reference whose SUVmean is not above the liver's of the same time point (in place)."""
    by_organ = {(r.timepoint, r.organ): r for r in regions if r.placed}
    for (timepoint, organ), spleen in by_organ.items():
        liver = by_organ.get((timepoint, "liver"))
        note = "its SUVmean is not above the liver's: the spleen is the hottest organ in [68Ga]DOTATATE; check it"
        spleen.warnings = [w for w in spleen.warnings if w != note]
        if organ == "spleen" and liver is not None and spleen.suv_mean <= liver.suv_mean:
            spleen.warnings.append(note)
    return regions
