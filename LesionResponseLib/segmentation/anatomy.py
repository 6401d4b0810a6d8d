"""Anatomy from the CT that the longitudinal search needs: the cranial cavity.

Inside the skull, [68Ga]Ga-DOTATATE shows the pituitary's physiological uptake on every scan, and SSTR-positive
meningiomas are the classic intracranial pitfall (Hofman et al., RadioGraphics 2015;35:500-516), while brain
and dural metastases of neuroendocrine tumours are rare. A search that follows uptake from scan to scan would
turn one equivocal intracranial ROI into a track on every scan, so the prior-guided search does not search
there (``workflow.prior_search``), and the model's ROIs lying there are dropped by default
(``segmentation.inference``, ``AnalysisParameters.segmentation.drop_intracranial``): the pituitary's uptake is
physiological (docs/DOMAIN.md §5), a meningioma is not the disease tracked, and a reader who judges an
intracranial focus a metastasis adds it in the review.

**Rule.** On each axial CT slice, bone (≥ :data:`BONE_HU`) closed over :data:`RING_GAP_MM` (sutures, partial
volume of a thin vault) is hole-filled; a hole is cranial when its area is that of a skull's inner section
(:data:`MIN_AREA_MM2`–:data:`MAX_AREA_MM2`) and it holds brain-like soft tissue: more than half its voxels
within :data:`BRAIN_HU` and at most :data:`MAX_FAT_SHARE` fat (< −30 HU). That keeps out the spinal canal (~2 cm²),
the paranasal sinuses (air), and a bony ring closed around the pelvis or thorax (fat, bowel gas). The
cavity is the largest 3D component of such holes spanning at least :data:`MIN_EXTENT_MM` in z. Where the
ring is open (skull base slices, a skull partly outside the field of view) nothing is marked, and the search
runs as without the rule. Checked on the phantom's CT and on synthetic rings (``Testing/Python/test_anatomy.py``),
not on patient CTs.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from LesionResponseLib.imaging import label_on_grid

#: Cortical bone of the vault and skull base (HU); contrast-filled vessels and trabecular bone stay below.
BONE_HU = 300.0
#: Gaps in the bony ring up to twice this (mm) are closed (sutures, a thin vault's partial volume).
RING_GAP_MM = 3.0
#: Inner cross-section of an adult or child skull (mm²): 20 cm² near the vertex to 300 cm².
MIN_AREA_MM2 = 2000.0
MAX_AREA_MM2 = 30000.0
#: Brain, CSF and the pituitary (HU); more than half of a cranial hole lies in this range.
BRAIN_HU = (0.0, 70.0)
#: Fat (< −30 HU) share above which a hole is body, not cranium (orbital fat lies outside the ring).
MAX_FAT_SHARE = 0.05
#: In-plane pixel size (mm) the CT is block-averaged to first: the PET's 4 mm (a 512² CT of 0.8-1 mm pixels: 4x4
#: or 5x5 blocks; 0.3 s for a whole-body CT instead of 1-2 s at 2 mm). A vault 2 mm thick (the thin temporal
#: squama) of ~1200 HU still averages to > 300 HU in at least one pixel across it; single gaps are closed.
WORKING_SPACING_MM = 4.0
#: The cavity spans at least this far in z (mm).
MIN_EXTENT_MM = 30.0
#: A ROI lies in the cranial cavity when at least this share of its voxels does (the majority).
INTRACRANIAL_SHARE = 0.5
#: Reason recorded for a search not run from a ROI in the cranial cavity (``Analysis.prior_searches``).
NOT_SEARCHED_INTRACRANIAL = ("not searched: the lesion-ROI lies in the cranial cavity (pituitary uptake, meningioma: "
                             "the reader decides)")


def cranial_cavity(ct_hu: sitk.Image, reference: sitk.Image | None = None) -> np.ndarray:
    """Bool (z, y, x) mask of the cranial cavity of ``ct_hu`` (module docstring), on the grid of ``reference``
    (e.g. the PET; nearest neighbour) or of the CT. All False when no skull is found."""
    target = reference if reference is not None else ct_hu
    shrink = max(1, int(WORKING_SPACING_MM // max(min(ct_hu.GetSpacing()[:2]), 1e-3)))
    if shrink > 1:
        ct_hu = sitk.BinShrink(sitk.Cast(ct_hu, sitk.sitkFloat32), [shrink, shrink, 1])
    ct = sitk.GetArrayViewFromImage(ct_hu)
    spacing_x, spacing_y, spacing_z = ct_hu.GetSpacing()
    radius = max(1, int(round(RING_GAP_MM / min(spacing_x, spacing_y))))
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)  # slice by slice: no connection across z
    bone = ct >= BONE_HU
    closed = ndimage.binary_closing(bone, _disk(radius)[None], border_value=0)
    inside, count = ndimage.label(ndimage.binary_fill_holes(closed, in_plane) & ~closed, in_plane)
    if count == 0:
        return _on_reference(np.zeros(ct.shape, bool), ct_hu, target)
    where = inside > 0
    hole_of, hu = inside[where], np.asarray(ct)[where]
    voxels = np.maximum(np.bincount(hole_of, minlength=count + 1), 1)
    area = voxels * spacing_x * spacing_y
    brain_like = np.bincount(hole_of, (hu >= BRAIN_HU[0]) & (hu <= BRAIN_HU[1]), count + 1) / voxels
    fat = np.bincount(hole_of, hu < -30, count + 1) / voxels
    cranial = (area >= MIN_AREA_MM2) & (area <= MAX_AREA_MM2) & (brain_like > 0.5) & (fat <= MAX_FAT_SHARE)
    cranial[0] = False
    holes = cranial[inside]
    return _on_reference(_largest_tall_component(holes, spacing_z), ct_hu, target)


def _on_reference(mask: np.ndarray, ct_hu: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """``mask`` (on ``ct_hu``'s grid) on the grid of ``reference`` (nearest neighbour)."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(ct_hu)
    return sitk.GetArrayFromImage(label_on_grid(image, reference, sitk.sitkUInt8)) > 0


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def _largest_tall_component(holes: np.ndarray, spacing_z: float) -> np.ndarray:
    components, count = ndimage.label(holes)
    if count == 0:
        return holes
    best = int(np.argmax(np.bincount(components[components > 0]))) if count > 1 else 1
    cavity = components == best
    slices = np.flatnonzero(cavity.any(axis=(1, 2)))
    if (slices[-1] - slices[0] + 1) * spacing_z < MIN_EXTENT_MM:
        return np.zeros_like(holes)
    return cavity
