"""Organs from what the analysis already has - the CT (HU), the PET (SUV) and the segmentation model's
physiological output - for the reference regions and the lesion sites (``analysis.reference_regions``, ``analysis.sites``).

No organ model is downloaded (TotalSegmentator and the like fetch their weights at run time); each organ comes
from a stated rule meant to hold on real PET/CT - a low-dose non-contrast or a contrast-enhanced CT, a liver of any
shape, a spleen outside the field of view or removed - and measured against the phantom's organ truth
(``benchmarks/bench_burden.py``). Everything is computed on the PET grid (the CT block-averaged onto it,
``imaging.hu_on_grid``); "left" and "right" are the patient's (DICOM LPS: +x is the patient's left).

- **Body**: CT above :data:`AIR_LIMIT_HU`, closed over :data:`BODY_CLOSING_MM` and filled per axial slice (the air inside - lungs, bowel gas - included),
  its largest 3D component. The **midline** is the median over slices of the body's centre in x.
- **Liver**: the largest soft-tissue region (:data:`SOFT_TISSUE_HU`) of moderate uptake on the patient's right.
  [68Ga]DOTATATE liver uptake is SUV 2-12 (docs/DOMAIN.md §5; :data:`LIVER_SUV_RANGE`), below the spleen and
  kidneys and above muscle, fat, lung and blood pool; regions of the PET smoothed over :data:`SMOOTHING_MM` within
  that range are opened by :data:`OPENING_MM` (cuts the thin bridges to bowel and organ rims), the largest on the
  right is taken, then the same is done again within :data:`LIVER_RELATIVE_BAND` of that region's median uptake,
  which follows this patient's liver (hot lesions and cold vessels fall outside it and leave holes). At least
  :data:`MIN_LIVER_ML` (a partial field of view still shows that much of an adult liver).
- **Kidneys and spleen**: components of the model's physiological output (at the model's calibrated threshold)
  or, without it (threshold or label-file segmentation), of the PET's hot soft tissue (smoothed SUV at least
  :data:`HOT_ORGAN_LIVER_RATIO` × the liver's); bridges narrower than 2 × :data:`OPENING_MM` are cut. Components of
  :data:`MIN_ORGAN_ML` or more lying :data:`MIN_OFF_MIDLINE_MM` or more off the midline (not the bladder) are
  candidates; the **kidneys** are the pair on either side that is most nearly mirror-symmetric (centres within
  :data:`KIDNEY_PAIR_MM` of each other's reflection), the **spleen** the largest remaining candidate on the left.
  Nothing is called spleen when no such candidate is left (splenectomy, spleen outside the field of view).
- **Skeleton**: CT at or above :data:`BONE_HU` with the cavities it closes per axial slice up to
  :data:`MAX_MARROW_AREA_MM2` (marrow, lytic lesions; the chest and pelvic rings enclose far more).
- **Lungs**: air (at or below :data:`AIR_LIMIT_HU`) inside the body, in components of :data:`MIN_LUNG_ML` or more
  that reach above the liver's top (bowel gas stays below the diaphragm).

Not done: vessels are not segmented (the reference regions avoid them through the liver's uptake band), nor the
pancreas (``analysis.sites`` places pancreatic lesions by position).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from LesionResponseLib.imaging import ball, hu_on_grid

#: Bumped whenever a rule changes what it finds (the pipeline's organ cache keys on it).
ORGANS_RULE_VERSION = 1
#: Values of the organ label map (``OUT/anatomy/tp{k}.nii.gz``); 0 = outside the body.
ORGAN_CODES: dict[str, int] = {"body": 1, "liver": 2, "spleen": 3, "kidney": 4, "skeleton": 5, "lung": 6}
#: Aerated lung is -950 to -600 HU, fat -120 to -60: -500 separates air (and lung) from every tissue.
AIR_LIMIT_HU = -500.0
#: Gaps in the body's outline up to twice this (mm) are closed before the air inside is filled: a lung touching a
#: thin chest wall at 4 mm voxels, a field of view grazing the skin.
BODY_CLOSING_MM = 8.0
#: Soft tissue from partial-volume fat (-20) to a liver enhanced in the portal venous phase (100-150 HU) with
#: margin; fat (< -30), air and bone (> 200) fall outside.
SOFT_TISSUE_HU = (-20.0, 200.0)
#: Typical [68Ga]DOTATATE liver SUVmean range (docs/DOMAIN.md §5; Kuyumcu et al. 2013, Boy et al. 2011).
LIVER_SUV_RANGE = (2.0, 12.0)
#: Normal liver around its own median: voxel CoV 10-20 % at 4 mm, so ±3 sd; blood pool and bowel (≤ 0.6x) and
#: spleen, kidneys and lesions (≥ 1.5x) fall outside.
LIVER_RELATIVE_BAND = (0.6, 1.5)
#: Gaussian smoothing (sd, mm) of the PET before the uptake bands: one 4 mm voxel halves the voxel noise.
SMOOTHING_MM = 4.0
#: Opening radius (mm): bridges narrower than 16 mm (bowel loops, organ rims blurred together) are cut.
OPENING_MM = 8.0
#: An adult liver is 1.2-2 L; a field of view cutting it still shows this much (mL).
MIN_LIVER_ML = 300.0
#: A spleen is 50-250 mL, a kidney 120-170 mL; adrenals, pituitary, uncinate process and thyroid are < 20 mL.
MIN_ORGAN_ML = 40.0
#: The bladder lies on the midline, kidneys and spleen ≥ 4 cm off it.
MIN_OFF_MIDLINE_MM = 30.0
#: Largest distance (mm) between one kidney's centre and the other's mirrored across the midline: the right
#: kidney lies 1-3 cm lower than the left.
KIDNEY_PAIR_MM = 60.0
#: Opening radii (mm) tried in turn until the kidneys come apart from the spleen: the PET's hot-organ mask
#: (without the model's output) joins them over wider bridges than the model's output does.
SPLIT_RADII_MM = (OPENING_MM, 12.0, 16.0)
#: Spleen and kidney SUVmean are 2-5x the liver's in [68Ga]DOTATATE (docs/DOMAIN.md §5).
HOT_ORGAN_LIVER_RATIO = 2.0
#: Cortical and trabecular bone averaged onto 4 mm voxels stays above 200 HU; soft tissue, even contrast-enhanced
#: in the portal venous phase (≤ 150-180 HU), stays below.
BONE_HU = 200.0
#: Largest marrow cavity closed by bone in one axial slice (mm²): a lumbar vertebral body is ~15 cm².
MAX_MARROW_AREA_MM2 = 3000.0
#: Smallest lung component (mL); bowel gas pockets are smaller or stay below the diaphragm.
MIN_LUNG_ML = 100.0


@dataclass
class Organs:
    """The organs of one time point on the PET grid: a label map (:data:`ORGAN_CODES`) and, per organ not
    found, the reason (``missing``: organ name -> sentence)."""

    labels: np.ndarray  # uint8 (z, y, x)
    grid: sitk.Image  # the PET grid (geometry only)
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        """Whether anything was found (not so for a PET whose axes are not the patient's)."""
        return bool(self.labels.any())

    def mask(self, organ: str) -> np.ndarray:
        """Bool (z, y, x) mask of ``organ`` (a name of :data:`ORGAN_CODES`; ``body`` is the whole body)."""
        if organ == "body":
            return self.labels > 0
        return self.labels == ORGAN_CODES[organ]

    def image(self) -> sitk.Image:
        """The label map as a uint8 SimpleITK image on the PET grid."""
        image = sitk.GetImageFromArray(self.labels.astype(np.uint8))
        image.CopyInformation(self.grid)
        return image

    @classmethod
    def from_image(cls, image: sitk.Image) -> Organs:
        """Organs from a label map written by :meth:`image` (the reasons for missing organs are not stored)."""
        return cls(sitk.GetArrayFromImage(image).astype(np.uint8), image)

    def midline_x_mm(self) -> float:
        """The body's midline: median over axial slices of the body's centre (x, mm, LPS)."""
        return body_midline_mm(self.mask("body"), self.grid)


def find_organs(pet_suv: sitk.Image, ct: sitk.Image | None, physiological: np.ndarray | None = None,
                physiological_threshold: float = 0.5) -> Organs:
    """The organs of one time point (module docstring) on the PET grid.

    ``physiological``: the model's physiological-uptake probability on the PET grid ((z, y, x), 0-1, or uint8 as
    cached: ``prior_guided.as_probability``), or None (the hot organs then come from the PET). Without a CT only the liver, spleen and kidneys are looked for (from the
    PET alone: no soft-tissue test), and the skeleton, lungs and body are empty.
    """
    suv = sitk.GetArrayFromImage(pet_suv).astype(np.float32)
    if not axis_aligned(pet_suv):  # left/right and the slices' levels need the patient axes
        reason = f"the PET's axes are not the patient's (direction {pet_suv.GetDirection()}): organs not looked for"
        return Organs(np.zeros(suv.shape, np.uint8), pet_suv, dict.fromkeys(("liver", "spleen", "kidney"), reason))
    spacing = tuple(float(s) for s in pet_suv.GetSpacing()[::-1])
    hu = hu_on_grid(ct, pet_suv) if ct is not None else None
    missing: dict[str, str] = {}
    body = _body(hu, spacing) if hu is not None else suv > 0.1
    x_mm = axis_mm(pet_suv, 0)
    midline = body_midline_mm(body, pet_suv)
    smooth = ndimage.gaussian_filter(suv, [SMOOTHING_MM / s for s in spacing])
    soft = ((hu >= SOFT_TISSUE_HU[0]) & (hu <= SOFT_TISSUE_HU[1])) if hu is not None else np.ones(suv.shape, bool)
    liver, why = _liver(suv, smooth, soft, spacing, x_mm, midline)
    if why:
        missing["liver"] = why
    if physiological is not None:
        from LesionResponseLib.segmentation.prior_guided import as_probability

        hot = as_probability(np.asarray(physiological)) >= physiological_threshold
        source = "the model's physiological output"
    else:
        level = float(np.median(suv[liver])) if liver.any() else LIVER_SUV_RANGE[1] / HOT_ORGAN_LIVER_RATIO
        hot = (smooth >= HOT_ORGAN_LIVER_RATIO * level) & soft
        source = f"the PET (smoothed SUV ≥ {HOT_ORGAN_LIVER_RATIO:g} × the liver's {level:.1f})"
    kidneys, spleen = _kidneys_and_spleen(hot & ~liver, spacing, pet_suv, midline)
    if not kidneys.any():
        missing["kidney"] = f"no pair of kidney-sized components on either side of the midline in {source}"
    if not spleen.any():
        missing["spleen"] = (f"no spleen-sized component on the patient's left besides the kidneys in {source} "
                             "(splenectomy? spleen outside the field of view?)")
    labels = body.astype(np.uint8) * ORGAN_CODES["body"]
    if hu is not None:
        labels[_lungs(hu, body, liver, spacing, axis_mm(pet_suv, 2))] = ORGAN_CODES["lung"]
        labels[_skeleton(hu, spacing)] = ORGAN_CODES["skeleton"]
    labels[kidneys] = ORGAN_CODES["kidney"]
    labels[spleen] = ORGAN_CODES["spleen"]
    labels[liver] = ORGAN_CODES["liver"]
    return Organs(labels, pet_suv, missing)


# ------------------------------------------------------------------------------------------------ geometry
def axis_aligned(image: sitk.Image) -> bool:
    """Whether the image's axes are the patient's x, y, z (each possibly reversed): PET and CT are axial."""
    return bool(np.allclose(np.abs(np.asarray(image.GetDirection()).reshape(3, 3)), np.eye(3), atol=1e-3))


def axis_mm(image: sitk.Image, axis: int) -> np.ndarray:
    """Physical coordinate (mm, LPS) along image ``axis`` (0 = x, 1 = y, 2 = z) of each index on that axis;
    the grid must be axis-aligned (:func:`axis_aligned`)."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if not axis_aligned(image):
        raise ValueError(f"image axes are not aligned with the patient axes (direction {image.GetDirection()})")
    size = image.GetSize()[axis]
    return image.GetOrigin()[axis] + direction[axis, axis] * image.GetSpacing()[axis] * np.arange(size)


def body_midline_mm(body: np.ndarray, grid: sitk.Image) -> float:
    """Median over axial slices of the body's centre in x (mm, LPS); 0 when the body is empty."""
    x_mm = axis_mm(grid, 0)
    counts = body.sum(axis=1)  # (z, x)
    per_slice = counts.sum(axis=1)
    if not per_slice.any():
        return 0.0
    centres = (counts @ x_mm)[per_slice > 0] / per_slice[per_slice > 0]
    return float(np.median(centres))


def in_plane() -> np.ndarray:
    """Structuring element connecting voxels within an axial slice only."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    return structure


def _largest(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _opened_components(mask: np.ndarray, spacing: tuple[float, ...], radius_mm: float = OPENING_MM) -> np.ndarray:
    """Components of ``mask`` after cutting bridges narrower than 2 × ``radius_mm``; the voxels of ``mask``
    within ``radius_mm`` of an opened component go back to it (so each keeps its full extent and the bridges stay
    cut; where two are that near, to the higher-numbered). 0 elsewhere. Works on ``mask``'s bounding box."""
    out = np.zeros(mask.shape, np.int32)
    box = _bounding_box(mask)
    if box is None:
        return out
    sub = mask[box]
    structure = ball(spacing, radius_mm)
    components, count = ndimage.label(ndimage.binary_opening(sub, structure))
    if count:
        grown = ndimage.grey_dilation(components, footprint=structure)
        out[box] = np.where(sub, np.where(components > 0, components, grown), 0)
    return out


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The bounding box of ``mask``'s True voxels, or None when there are none."""
    boxes = ndimage.find_objects(mask.astype(np.uint8))
    return boxes[0] if boxes else None


def _volume_ml(voxels: int, spacing: tuple[float, ...]) -> float:
    return voxels * float(np.prod(spacing)) / 1000.0


# ------------------------------------------------------------------------------------------------ organs
def _body(hu: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    disk = ball((spacing[0], spacing[1], spacing[2]), BODY_CLOSING_MM)
    disk[[0, -1]] = False  # in-plane: the middle slice of the ball
    closed = ndimage.binary_closing(hu > AIR_LIMIT_HU, disk[disk.shape[0] // 2: disk.shape[0] // 2 + 1])
    return _largest(ndimage.binary_fill_holes(closed, in_plane()))


def _liver(suv: np.ndarray, smooth: np.ndarray, soft: np.ndarray, spacing: tuple[float, ...], x_mm: np.ndarray,
           midline: float) -> tuple[np.ndarray, str]:
    """The liver mask (module docstring) and, when none is found, why."""
    first = _right_largest(_opened_components(soft & _within(smooth, LIVER_SUV_RANGE), spacing), x_mm, midline)
    if first is None:
        return np.zeros(suv.shape, bool), (f"no soft-tissue region of SUV {LIVER_SUV_RANGE[0]:g}-"
                                           f"{LIVER_SUV_RANGE[1]:g} on the patient's right")
    level = float(np.median(suv[first]))
    band = (level * LIVER_RELATIVE_BAND[0], level * LIVER_RELATIVE_BAND[1])
    components = _opened_components(soft & _within(smooth, band), spacing)
    overlap = np.bincount(components[first], minlength=int(components.max()) + 1)
    overlap[0] = 0
    liver = components == int(np.argmax(overlap)) if overlap.any() else first
    volume = _volume_ml(int(liver.sum()), spacing)
    if volume < MIN_LIVER_ML:
        return np.zeros(suv.shape, bool), (f"the largest region of liver-like uptake (SUV {band[0]:.1f}-{band[1]:.1f}) "
                                           f"is {volume:.0f} mL, under {MIN_LIVER_ML:.0f} mL (liver outside the field "
                                           "of view, or replaced by tumour?)")
    return liver, ""


def _within(values: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    return (values >= band[0]) & (values <= band[1])


def _right_largest(components: np.ndarray, x_mm: np.ndarray, midline: float) -> np.ndarray | None:
    """The largest component whose centre lies on the patient's right (x below the midline), or None."""
    count = int(components.max())
    if count == 0:
        return None
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    x_sum = np.bincount(components.ravel(), weights=np.broadcast_to(x_mm, components.shape).ravel(),
                        minlength=count + 1)
    right = [c for c in range(1, count + 1) if sizes[c] and x_sum[c] / sizes[c] < midline]
    if not right:
        return None
    return components == max(right, key=lambda c: sizes[c])


@dataclass
class _Candidate:
    index: int
    volume_ml: float
    centre_mm: np.ndarray  # (x, y, z) LPS


def _kidneys_and_spleen(hot: np.ndarray, spacing: tuple[float, ...], grid: sitk.Image, midline: float,
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Kidney and spleen masks from a hot-organ mask (module docstring). Where the spleen and a kidney stay
    joined (no kidney pair), the bridges are cut again with the wider radii of :data:`SPLIT_RADII_MM`."""
    for radius in SPLIT_RADII_MM:
        components = _opened_components(hot, spacing, radius)
        candidates = _candidates(components, spacing, grid, midline)
        right = [c for c in candidates if c.centre_mm[0] < midline]
        left = [c for c in candidates if c.centre_mm[0] > midline]
        pairs = [(_mirror_distance(r, s, midline), r, s) for r in right for s in left]
        pairs = [p for p in pairs if p[0] <= KIDNEY_PAIR_MM]
        if pairs:
            _, r, s = min(pairs, key=lambda p: p[0])
            rest = [c for c in left if c is not s]
            spleen = components == max(rest, key=lambda c: c.volume_ml).index if rest else np.zeros(hot.shape, bool)
            return np.isin(components, [r.index, s.index]), spleen
    empty = np.zeros(hot.shape, bool)
    return empty, (components == max(left, key=lambda c: c.volume_ml).index if left else empty)


def _candidates(components: np.ndarray, spacing: tuple[float, ...], grid: sitk.Image, midline: float,
                ) -> list[_Candidate]:
    """Components of kidney or spleen size off the midline."""
    count = int(components.max())
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    centres = ndimage.center_of_mass(components > 0, components, range(1, count + 1)) if count else []
    candidates = []
    for index, centre_zyx in enumerate(centres, start=1):
        volume = _volume_ml(int(sizes[index]), spacing)
        centre = np.asarray(grid.TransformContinuousIndexToPhysicalPoint([float(c) for c in centre_zyx[::-1]]))
        if volume >= MIN_ORGAN_ML and abs(centre[0] - midline) >= MIN_OFF_MIDLINE_MM:
            candidates.append(_Candidate(index, volume, centre))
    return candidates


def _mirror_distance(right: _Candidate, left: _Candidate, midline: float) -> float:
    mirrored = left.centre_mm.copy()
    mirrored[0] = 2 * midline - mirrored[0]
    return float(np.linalg.norm(right.centre_mm - mirrored))


def _skeleton(hu: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    bone = hu >= BONE_HU
    structure = in_plane()
    holes, count = ndimage.label(ndimage.binary_fill_holes(bone, structure) & ~bone, structure)
    if count == 0:
        return bone
    area = np.bincount(holes.ravel()) * spacing[1] * spacing[2]
    small = area <= MAX_MARROW_AREA_MM2
    small[0] = False
    return bone | small[holes]


def _lungs(hu: np.ndarray, body: np.ndarray, liver: np.ndarray, spacing: tuple[float, ...], z_mm: np.ndarray,
           ) -> np.ndarray:
    air, count = ndimage.label((hu <= AIR_LIMIT_HU) & body)
    if count == 0:
        return np.zeros(hu.shape, bool)
    sizes = np.bincount(air.ravel()) * float(np.prod(spacing)) / 1000.0
    big = [c for c in range(1, count + 1) if sizes[c] >= MIN_LUNG_ML]
    if liver.any() and big:  # the lungs reach above the diaphragm (the liver's top, LPS +z = head); bowel gas stays below
        liver_top = float(z_mm[liver.any(axis=(1, 2))].max())
        highest = ndimage.maximum(np.broadcast_to(z_mm[:, None, None], air.shape), air, big)
        big = [c for c, top in zip(big, np.atleast_1d(highest), strict=True) if top > liver_top]
    return np.isin(air, big)
