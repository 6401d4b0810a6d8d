"""Render the phantom patient at each time point: truth, CT (HU) and PET (SUV) with PSF blur and noise.

Per scan the anatomy is sampled on the CT grid (2 mm in-plane, 4 mm slices, 512 mm field of view) through
the inverse of that scan's motion (evaluated on an 8 mm lattice and interpolated, error < 0.1 mm; lesions
use the exact inverse). Lesions are rendered with partial-volume fractions from 1 mm
supersampling, so small lesions keep their true activity. The true SUV image is blurred with a Gaussian
PSF (FWHM 5.5–6.5 mm), averaged 2×2 onto the 4 mm PET grid (PET voxel (i, j, k) covers CT voxels
(2i..2i+1, 2j..2j+1, k)), and given noise whose variance follows the detected counts (activity
concentration × frame duration × decay), then lightly post-filtered as scanners do.

Truth (kept before blur and noise): the noise-free SUV on the PET grid, lesion label maps (PET voxels more
than half covered by lesion), organ label maps, each tissue's uptake at that scan (``organ_suv``: the SUV painted before blur and noise,
per-scan variability included), and per lesion its true volume and SUVtotal (integral of the true SUV,
mL·SUV) and SUVmax.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from LesionResponseLib.phantom.anatomy import TISSUES, BodyParameters, Shape, body_shapes
from LesionResponseLib.phantom.detectability import lesion_snrs
from LesionResponseLib.phantom.domain import (
    TEXTURE_FWHM_MM,
    DomainOptions,
    apply_to_lesions,
    lesion_rng,
    scan_rng,
)
from LesionResponseLib.phantom.errors import bad_option
from LesionResponseLib.phantom.lesions import (
    Blob,
    Lesion,
    LesionOptions,
    bridge_blob,
    lobe_scale,
    make_lesions,
    max_lobe_scale,
    profile_factor,
)
from LesionResponseLib.phantom.motion import Motion, random_motion

#: Bumped whenever the same seed renders a different patient (caches of generated folders key on it).
PHANTOM_VERSION = 2
GA68_HALF_LIFE_S = 4062.6  # 67.71 min (docs/DOMAIN.md §3)
CT_SPACING_MM = (2.0, 2.0, 4.0)  # x, y, z
PET_SPACING_MM = (4.0, 4.0, 4.0)
MATRIX_CT = 256  # 512 mm field of view
REFERENCE_LIVER_COV = 0.12  # liver voxel CoV at 150 MBq, 60 min, 75 kg, 180 s/bed (typical clinical)
BED_LENGTH_MM = 160.0
BED_OVERLAP = 0.3


@dataclass
class Acquisition:
    """Per-scan acquisition parameters (what the DICOM headers will say)."""

    scan_start: dt.datetime
    injection: dt.datetime
    injected_activity_bq: float
    weight_kg: float
    height_m: float
    sex: str
    frame_duration_s: float
    psf_fwhm_mm: float
    n_beds: int

    @property
    def uptake_time_s(self) -> float:
        return (self.scan_start - self.injection).total_seconds()

    @property
    def decayed_activity_bq(self) -> float:
        return self.injected_activity_bq * 2 ** (-self.uptake_time_s / GA68_HALF_LIFE_S)

    @property
    def suv_factor(self) -> float:
        """SUVbw per Bq/mL: weight (g) / injected activity decayed to the scan start (Bq)."""
        return self.weight_kg * 1000.0 / self.decayed_activity_bq


@dataclass
class SimulatedTimepoint:
    """One scan: images (SimpleITK, LPS geometry) and what produced them."""

    index: int
    acquisition: Acquisition
    motion: Motion
    body: BodyParameters
    pet_suv: sitk.Image  # float32 SUV, after PSF and noise, PET grid
    pet_true: sitk.Image  # float32 SUV, noise- and blur-free, PET grid
    lesion_labels: sitk.Image  # uint16, PET grid, truth labels
    organ_labels: sitk.Image  # uint8, PET grid, ORGAN_LABELS
    ct: sitk.Image | None  # int16 HU, CT grid
    nac_pet: sitk.Image | None = None  # float32 Bq/mL-like, not attenuation corrected (to be ignored)
    lesion_truth: dict[int, dict] = field(default_factory=dict)  # lesion_id → truth at this time point
    organ_suv: dict[str, float] = field(default_factory=dict)  # tissue name → SUV painted at this scan (true uptake)


@dataclass
class SimulatedPatient:
    seed: int
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    lesions: list[Lesion]
    timepoints: list[SimulatedTimepoint]
    truth: dict


def simulate_patient(seed: int, timepoints: int = 4, *, with_ct: bool = True, n_lesions: int | None = None,
                     motion_scale: float = 1.0, noise_scale: float = 1.0, with_nac: bool = False,
                     axial_extent_mm: float | None = None, progress=None, small_lesions: bool = False,
                     low_contrast: bool = False, near_organs: float = 0.0,
                     domain: DomainOptions | None = None, split_neighbours: tuple[float, ...] = ()) -> SimulatedPatient:
    """Simulate a whole-body [68Ga]DOTATATE PET/CT patient over ``timepoints`` scans (2–7), in memory.

    Args:
        seed: makes everything deterministic (anatomy, lesions, trajectories, motion, noise).
        timepoints: number of scans, 2–7 (1 is allowed for training data).
        with_ct: also render the CT (HU, 2 mm grid); False is faster (training on PET only).
        n_lesions: number of lesions (default: 12–40 drawn from the seed; 0: a patient without lesions).
        motion_scale: scales repositioning and non-rigid displacement (0 = no motion).
        noise_scale: scales the PET noise standard deviation (0 = noise-free).
        with_nac: also make a non-attenuation-corrected PET (for DICOM decoys).
        axial_extent_mm: scan only this length (mm) centred on the upper abdomen (liver, spleen, kidneys)
            instead of vertex to thighs: a fast, small patient for tests.
        progress: optional callable ``progress(done, total)``.
        small_lesions, low_contrast, near_organs, split_neighbours: harder patients
            (``phantom.lesions.LesionOptions``; off by default, and off they leave every seed's patient unchanged).
        domain: another site's scanner, reconstruction, organs and lesions (``phantom.domain.DomainOptions``;
            None leaves every seed's patient unchanged). On another PET grid or with correlated noise the lesions'
            ``ideal_snr`` is None: the white-noise ideal observer of ``phantom.detectability`` does not apply.
    """
    if not 1 <= timepoints <= 7:
        raise bad_option("timepoints", timepoints, "between 1 and 7")
    rng = np.random.default_rng(seed)
    sex = str(rng.choice(["M", "F"]))
    height = float(rng.normal(1.77 if sex == "M" else 1.64, 0.06))
    bmi = float(rng.uniform(19.5, 31.0))
    base_weight = bmi * height**2
    body0 = BodyParameters(height_m=height, weight_kg=base_weight)
    options = LesionOptions(small_lesions=small_lesions, low_contrast=low_contrast, near_organs=near_organs,
                            split_neighbours=tuple(float(d) for d in split_neighbours))
    lesions = make_lesions(seed, timepoints, body0, n_lesions, options)
    if domain is not None:
        apply_to_lesions(lesions, domain, lesion_rng(seed))
    start = dt.datetime(2025, 1, 6, 9, 0) + dt.timedelta(days=int(rng.integers(0, 300)))
    organ_scale = {t.name: 1.0 for t in TISSUES}
    base_liver = float(rng.uniform(0.75, 1.35))
    scans = []
    day = start
    for k in range(timepoints):
        if k:
            day += dt.timedelta(days=int(rng.integers(49, 70)))
        acq = _random_acquisition(rng, day, height, base_weight - 1.0 * k * rng.uniform(0, 1.5), sex)
        body = BodyParameters(height_m=height, weight_kg=acq.weight_kg, arms_up=bool(rng.random() < 0.5),
                              bladder_radius_mm=float(rng.uniform(22, 55)), bowel_seed=seed * 10 + k)
        for t in TISSUES:
            organ_scale[t.name] = float(np.exp(rng.normal(0, t.suv_spread))) if t.suv_spread else 1.0
        organ_scale["liver"] *= base_liver
        for name, factor in domain.organ_uptake if domain else ():
            organ_scale[name] *= factor
        motion = random_motion(rng, motion_scale)
        cut = (float(rng.uniform(0, 30)), float(rng.uniform(0, 30)))
        if axial_extent_mm:
            cut = (-float(axial_extent_mm), 0.0)  # negative top cut: a slab (see _grids)
        noise_rng = np.random.default_rng([seed, k, 99])
        site = _ScanDomain(domain, scan_rng(seed, k)) if domain is not None else None
        if site is not None and domain.psf_fwhm_mm:
            acq.psf_fwhm_mm = float(site.rng.uniform(*domain.psf_fwhm_mm))
        scans.append(_render(k, lesions, body, acq=acq, motion=motion, organ_scale=organ_scale, cut=cut,
                             rng=noise_rng, with_ct=with_ct, noise_scale=noise_scale, with_nac=with_nac, site=site))
        if progress:
            progress(k + 1, timepoints)
    patient_id = f"LRPH{seed:04d}"
    birth = f"{start.year - int(rng.integers(40, 80))}0{int(rng.integers(1, 10))}15"
    patient = SimulatedPatient(seed, patient_id, f"Phantom^Seed{seed}", birth, sex, lesions, scans, {})
    patient.truth = build_truth(patient)
    return patient


def _random_acquisition(rng, day: dt.datetime, height: float, weight: float, sex: str) -> Acquisition:
    injection = day.replace(hour=int(rng.integers(8, 14)), minute=int(rng.integers(0, 60)),
                            second=int(rng.integers(0, 60)))
    uptake = float(rng.uniform(50, 75)) * 60
    scan_start = injection + dt.timedelta(seconds=round(uptake))
    return Acquisition(scan_start=scan_start, injection=injection,
                       injected_activity_bq=float(rng.uniform(120, 200)) * 1e6,
                       weight_kg=round(float(weight + rng.uniform(-1.5, 1.5)), 1), height_m=round(height, 2),
                       sex=sex, frame_duration_s=float(rng.choice([120, 150, 180])),
                       psf_fwhm_mm=float(rng.uniform(5.5, 6.5)), n_beds=0)


# ---------------------------------------------------------------------------------------------- rendering


@dataclass
class _Grid:
    """A scanner grid: origin (x, y, z of voxel [0,0,0], LPS mm), spacing (mm), size (nx, ny, nz).

    Slices run from head to feet (z decreasing with index) as scanners store them; direction diag(1,1,-1).
    """

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    size: tuple[int, int, int]

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = self.origin[0] + self.spacing[0] * np.arange(self.size[0], dtype=np.float32)
        y = self.origin[1] + self.spacing[1] * np.arange(self.size[1], dtype=np.float32)
        z = self.origin[2] - self.spacing[2] * np.arange(self.size[2], dtype=np.float32)
        return x, y, z

    def image(self, array: np.ndarray) -> sitk.Image:
        """A SimpleITK image from a head-first (z, y, x) array, re-ordered feet→head (identity direction).

        Identity direction with z ascending is how loaders (ours, SimpleITK's) return DICOM series, so truth
        masks and loaded images share index order as well as physical geometry.
        """
        img = sitk.GetImageFromArray(np.ascontiguousarray(array[::-1]))
        bottom = self.origin[2] - self.spacing[2] * (self.size[2] - 1)
        img.SetOrigin((self.origin[0], self.origin[1], bottom))
        img.SetSpacing(self.spacing)
        return img

    def index_range(self, low: np.ndarray, high: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Slices (z, y, x) of the voxels inside a physical box, or None when outside the grid."""
        x0, y0, z0 = self.origin
        sx, sy, sz = self.spacing
        i0, i1 = int(np.floor((low[0] - x0) / sx)), int(np.ceil((high[0] - x0) / sx)) + 1
        j0, j1 = int(np.floor((low[1] - y0) / sy)), int(np.ceil((high[1] - y0) / sy)) + 1
        k0, k1 = int(np.floor((z0 - high[2]) / sz)), int(np.ceil((z0 - low[2]) / sz)) + 1
        nx, ny, nz = self.size
        i0, j0, k0 = max(i0, 0), max(j0, 0), max(k0, 0)
        i1, j1, k1 = min(i1, nx), min(j1, ny), min(k1, nz)
        if i0 >= i1 or j0 >= j1 or k0 >= k1:
            return None
        return slice(k0, k1), slice(j0, j1), slice(i0, i1)


def _grids(motion: Motion, body: BodyParameters, cut: tuple[float, float]) -> tuple[_Grid, _Grid]:
    """CT and PET grids covering vertex to mid-thigh of this scan, shortened by ``cut`` (top, bottom) mm."""
    if cut[0] < 0:  # slab of length -cut[0] mm centred on the upper abdomen
        centre = motion.to_scanner([(0.0, 0.0, -600.0 * body.z_scale)])[0, 2]
        top, bottom = centre - cut[0] / 2, centre + cut[0] / 2
    else:
        top = motion.to_scanner([(0.0, 0.0, 15.0)])[0, 2] - cut[0]
        bottom = motion.to_scanner([(0.0, 0.0, -990.0 * body.z_scale)])[0, 2] + cut[1]
    nz = int((top - bottom) // PET_SPACING_MM[2]) + 1
    top = float(np.round(top, 1))
    ct = _Grid((-255.0, -255.0, top), CT_SPACING_MM, (MATRIX_CT, MATRIX_CT, nz))
    pet = _Grid((-254.0, -254.0, top), PET_SPACING_MM, (MATRIX_CT // 2, MATRIX_CT // 2, nz))
    return ct, pet


def _box_in_scanner(motion: Motion, low, high, margin: float, lattice_mm: float = 20.0,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Scanner-space box (low, high, mm) holding the image of an anatomical box, padded by ``margin`` mm.

    The box is sampled on a lattice every ``lattice_mm`` and mapped forward; between lattice points the
    smooth displacement deviates from linear by < 0.5 mm (curvature ≤ 0.009 /mm), covered by a 2 mm pad.
    """
    low, high = np.asarray(low, float), np.asarray(high, float)
    counts = np.maximum(2, np.ceil((high - low) / lattice_mm).astype(int) + 1)
    grids = np.meshgrid(*[np.linspace(lo, hi, n) for lo, hi, n in zip(low, high, counts, strict=True)])
    mapped = motion.to_scanner(np.stack([g.ravel() for g in grids], axis=1))
    pad = margin + 2.0
    return mapped.min(axis=0) - pad, mapped.max(axis=0) + pad


def _paint_tissues(grid: _Grid, coords, shapes: list[Shape], motion: Motion) -> np.ndarray:
    """Tissue label volume (z, y, x) on ``grid`` from the anatomical coordinates of its voxels."""
    ax, ay, az = coords
    labels = np.zeros(ax.shape, np.uint8)
    lut = {t.name: t.label for t in TISSUES}
    for shape in shapes:
        box = grid.index_range(*_box_in_scanner(motion, *shape.bbox(), margin=2 * max(grid.spacing)))
        if box is None:
            continue
        inside = shape.inside(ax[box], ay[box], az[box])
        labels[box][inside] = lut[shape.tissue]
    return labels


def _render_blob(grid: _Grid, motion: Motion, blob: Blob, supersample=(2, 2, 4)):
    """Partial-volume fraction and activity (SUV × fraction) of a blob on its box of ``grid``."""
    reach = np.asarray(blob.radii) * max_lobe_scale(blob)
    low = np.asarray(blob.center) - reach
    high = np.asarray(blob.center) + reach
    box = grid.index_range(*_box_in_scanner(motion, low, high, margin=max(grid.spacing)))
    if box is None:
        return None
    x, y, z = grid.axes()
    sx, sy, sz = supersample
    ox = (np.arange(sx) + 0.5) / sx - 0.5
    oy = (np.arange(sy) + 0.5) / sy - 0.5
    oz = (np.arange(sz) + 0.5) / sz - 0.5
    xs = (x[box[2]][:, None] + ox[None, :] * grid.spacing[0]).ravel()
    ys = (y[box[1]][:, None] + oy[None, :] * grid.spacing[1]).ravel()
    zs = (z[box[0]][:, None] - oz[None, :] * grid.spacing[2]).ravel()
    ax, ay, az = motion.to_anatomical(xs[None, None, :], ys[None, :, None], zs[:, None, None])
    offsets = [(a - c) / r for a, c, r in zip((ax, ay, az), blob.center, blob.radii, strict=True)]
    rho2 = sum(d**2 for d in offsets)
    if blob.lobes:
        rho2 = rho2 / lobe_scale(blob, *offsets) ** 2
    inside = rho2 <= 1.0
    act = np.where(inside, profile_factor(blob.profile, np.sqrt(np.minimum(rho2, 1.0))), 0.0) * blob.suv
    nz, ny, nx = len(zs) // sz, len(ys) // sy, len(xs) // sx
    frac = inside.reshape(nz, sz, ny, sy, nx, sx).mean(axis=(1, 3, 5), dtype=np.float32)
    activity = act.reshape(nz, sz, ny, sy, nx, sx).mean(axis=(1, 3, 5), dtype=np.float32)
    return box, frac, activity


def _lesion_blobs(lesions: list[Lesion], k: int) -> list[tuple[int, Blob]]:
    """(lesion_id, blob) pairs present at time point k, merge bridges and merged labels included."""
    by_id = {le.lesion_id: le for le in lesions}
    out = []
    for le in lesions:
        for blob in le.blobs(k):
            if le.merge_partner is not None and le.merge_partner < le.lesion_id and le.merge_from is not None \
                    and k >= le.merge_from and by_id.get(le.merge_partner) and by_id[le.merge_partner].blobs(k):
                blob.label = le.merge_partner  # merged: one connected ROI, labelled as the first part
            out.append((le.lesion_id, blob))
        if le.merge_partner is not None and le.merge_partner > le.lesion_id:
            bridge = bridge_blob(le, by_id[le.merge_partner], k)
            if bridge is not None:
                out.append((le.lesion_id, bridge))
    return out


@dataclass
class _ScanDomain:
    """A scan's :class:`~LesionResponseLib.phantom.domain.DomainOptions` and its own random stream."""

    options: DomainOptions
    rng: np.random.Generator

    @property
    def white_noise_on_default_grid(self) -> bool:
        return self.options.default_grid and not self.options.noise_correlation_mm


def _render(k, lesions, body, *, acq: Acquisition, motion: Motion, organ_scale, cut, rng, with_ct, noise_scale,
            with_nac, site: _ScanDomain | None = None) -> SimulatedTimepoint:
    ct_grid, pet_grid = _grids(motion, body, cut)
    x, y, z = ct_grid.axes()
    coords = motion.to_anatomical_grid(x, y, z)
    tissue = _paint_tissues(ct_grid, coords, body_shapes(body), motion)
    del coords
    suv_lut = np.array([t.suv * organ_scale[t.name] for t in TISSUES], np.float32)
    suv = suv_lut[tissue]
    if site is not None and site.options.organ_texture_cov:
        suv *= _texture(suv.shape, site.options.organ_texture_cov, site.rng)
    hu = np.array([t.hu for t in TISSUES], np.float32)[tissue] if with_ct else None
    lesion_frac = np.zeros(suv.shape, np.float32)
    lesion_label = np.zeros(suv.shape, np.uint16)
    truth: dict[int, dict] = {}
    voxel_ml = float(np.prod(CT_SPACING_MM)) / 1000.0
    pieces: dict[int, list] = {}  # lesion id -> (CT box, SUV change): its signal, for the ideal observer
    for lesion_id, blob in _lesion_blobs(lesions, k):
        rendered = _render_blob(ct_grid, motion, blob)
        if rendered is None:
            continue
        box, frac, activity = rendered
        before = suv[box].copy()
        suv[box] = suv[box] * (1 - frac) + activity
        pieces.setdefault(lesion_id, []).append((box, suv[box] - before))
        if hu is not None:
            lesion_hu = next(le.hu for le in lesions if le.lesion_id == lesion_id)
            hu[box] = hu[box] * (1 - frac) + lesion_hu * frac
        sub_frac, sub_label = lesion_frac[box], lesion_label[box]
        better = frac > sub_frac
        sub_label[better] = blob.label
        sub_frac[better] = frac[better]
        entry = truth.setdefault(lesion_id, {"volume_ml": 0.0, "suv_total": 0.0, "labels": set()})
        entry["volume_ml"] += float(frac.sum()) * voxel_ml
        entry["suv_total"] += float(activity.sum()) * voxel_ml
        entry["labels"].add(blob.label)
    # PET grid truth: the noise- and blur-free SUV and labels of PET voxels > half covered by lesion
    to_pet, nearest = _downsample, lambda volume: volume[:, ::2, ::2].copy()
    if site is not None and not site.options.default_grid:
        pet_grid = _pet_grid_of(ct_grid, site.options.pet_spacing_mm)
        resampler = _Resampler(ct_grid, pet_grid)
        to_pet, nearest = resampler.mean, resampler.nearest
    pet_true = to_pet(suv)
    frac_pet = to_pet(lesion_frac)
    labels_pet = nearest(lesion_label)
    labels_pet[frac_pet < 0.5] = 0
    _keep_tiny_lesions(labels_pet, frac_pet, lesion_label, nearest(lesion_label))
    organs_pet = nearest(tissue)
    acq.n_beds = int(np.ceil(pet_grid.size[2] * pet_grid.spacing[2] / (BED_LENGTH_MM * (1 - BED_OVERLAP))))
    correlation = site.options.noise_correlation_mm if site is not None else 0.0
    pet_noisy, noise_free = _pet_formation(suv, acq, rng, noise_scale, to_pet, pet_grid.spacing, correlation)
    snrs = _ideal_snrs(pieces, suv.shape, acq, noise_free, noise_scale) \
        if site is None or site.white_noise_on_default_grid else dict.fromkeys(pieces)
    nac = _non_attenuation_corrected(pet_noisy, organs_pet, pet_grid.spacing) if with_nac else None
    ct_img = None
    if hu is not None:
        hu += rng.normal(0, 12.0, hu.shape).astype(np.float32)
        ct_img = ct_grid.image(np.clip(np.round(hu), -1024, 3071).astype(np.int16))
    scan = SimulatedTimepoint(
        k, acq, motion, body, pet_grid.image(pet_noisy), pet_grid.image(pet_true),
        pet_grid.image(labels_pet.astype(np.uint16)), pet_grid.image(organs_pet), ct_img,
        pet_grid.image(nac) if nac is not None else None)
    scan.lesion_truth = _finish_truth(truth, scan, snrs)
    scan.organ_suv = {t.name: float(value) for t, value in zip(TISSUES, suv_lut, strict=True)}
    return scan


def _downsample(volume: np.ndarray) -> np.ndarray:
    """Mean over 2×2 in-plane blocks: CT grid (z, 2y, 2x) → PET grid (z, y, x)."""
    nz, ny, nx = volume.shape
    return volume.reshape(nz, ny // 2, 2, nx // 2, 2).mean(axis=(2, 4), dtype=np.float32)


def _keep_tiny_lesions(labels_pet, frac_pet, lesion_label_ct, label_pet_any) -> None:
    """A lesion too small to cover half a PET voxel keeps its most-covered voxel in the truth mask
    (``label_pet_any``: the CT-grid labels sampled at the PET voxels)."""
    present = set(np.unique(label_pet_any).tolist()) | set(np.unique(lesion_label_ct).tolist())
    present.discard(0)
    missing = present - set(np.unique(labels_pet).tolist())
    if not missing:
        return
    for label in missing:
        weights = np.where(label_pet_any == label, frac_pet, 0)
        if weights.max() > 0:
            labels_pet[np.unravel_index(np.argmax(weights), weights.shape)] = label


def _psf_sigma_voxels(acq: Acquisition) -> tuple[float, float, float]:
    """The PSF's standard deviation along (z, y, x) in CT voxels."""
    sigma_mm = acq.psf_fwhm_mm / 2.3548
    return sigma_mm / CT_SPACING_MM[2], sigma_mm / CT_SPACING_MM[1], sigma_mm / CT_SPACING_MM[0]


def _pet_formation(suv_ct: np.ndarray, acq: Acquisition, rng: np.random.Generator, noise_scale: float,
                   to_pet=_downsample, voxel_mm=PET_SPACING_MM, correlation_mm: float = 0.0,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """PSF blur (CT grid), averaging onto the PET grid (``to_pet``: 2×2 by default), count-dependent noise
    (correlated over ``correlation_mm`` FWHM when > 0), post-filter.

    Returns the PET (SUV) and the blurred, noise-free PET before noise (SUV, same grid)."""
    blurred = ndimage.gaussian_filter(suv_ct, _psf_sigma_voxels(acq), mode="constant")
    noise_free = to_pet(blurred)
    pet = noise_free
    if noise_scale > 0:
        pet = pet + _noise(pet, acq, rng, voxel_mm, correlation_mm) * noise_scale
        pet = ndimage.gaussian_filter(pet, POST_FILTER_SIGMA, mode="nearest")
    return np.clip(pet, 0, None).astype(np.float32), noise_free


def _noise(pet_suv: np.ndarray, acq: Acquisition, rng: np.random.Generator, voxel_mm=PET_SPACING_MM,
           correlation_mm: float = 0.0) -> np.ndarray:
    """Gaussian noise (SUV) of standard deviation :func:`_noise_sd`, white or correlated (:func:`_correlate`)."""
    white = rng.standard_normal(pet_suv.shape, dtype=np.float32)
    if correlation_mm > 0:
        # the post-filter barely smooths correlated noise further: scale it so that after the post-filter each
        # voxel has the noise the calibration gives (REFERENCE_LIVER_COV), only with a longer correlation
        sigma = _sigma_voxels(correlation_mm, voxel_mm)
        after_filter = _kernel_gain(np.hypot(sigma, POST_FILTER_SIGMA)) / _kernel_gain(sigma)
        white = _correlate(white, sigma) * np.float32(_kernel_gain([POST_FILTER_SIGMA] * 3) / after_filter)
    return white * _noise_sd(pet_suv, acq, voxel_mm=voxel_mm)


POST_FILTER_SIGMA = 0.5  # voxels: the scanner's light post-filter (_pet_formation)


def _sigma_voxels(fwhm_mm: float, voxel_mm) -> list[float]:
    """A Gaussian's standard deviation along (z, y, x) in voxels of ``voxel_mm`` (x, y, z) from its FWHM (mm)."""
    return [fwhm_mm / 2.3548 / v for v in voxel_mm[::-1]]


def _kernel_gain(sigma) -> float:
    """The factor by which a Gaussian filter of ``sigma`` (voxels per axis) scales the sd of white noise."""
    impulse = np.zeros([2 * int(4 * s + 0.5) + 1 for s in sigma], np.float64)
    impulse[tuple(n // 2 for n in impulse.shape)] = 1.0
    return float(np.sqrt(np.sum(ndimage.gaussian_filter(impulse, sigma, mode="constant") ** 2)))


def _correlate(white: np.ndarray, sigma) -> np.ndarray:
    """Unit-variance white noise (z, y, x) smoothed by a Gaussian of ``sigma`` (voxels) and scaled back to unit
    variance: the same per-voxel noise, correlated as an iterative reconstruction's."""
    return (ndimage.gaussian_filter(white, sigma, mode="wrap") / _kernel_gain(sigma)).astype(np.float32)


def _texture(shape: tuple[int, int, int], cov: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth log-normal uptake modulation (mean 1, coefficient of variation ``cov``, correlation
    :data:`~LesionResponseLib.phantom.domain.TEXTURE_FWHM_MM`) on the CT grid (z, y, x)."""
    field = _correlate(rng.standard_normal(shape, dtype=np.float32), _sigma_voxels(TEXTURE_FWHM_MM, CT_SPACING_MM))
    sigma = float(np.sqrt(np.log1p(cov**2)))
    return np.exp(sigma * field - sigma**2 / 2).astype(np.float32)


def _pet_grid_of(ct: _Grid, spacing_mm) -> _Grid:
    """A PET grid of ``spacing_mm`` (x, y, z) over the CT grid's field of view and axial extent."""
    spacing = tuple(float(v) for v in spacing_mm)
    edge = [o - s / 2 for o, s in zip(ct.origin[:2], ct.spacing[:2], strict=True)]
    size_xy = [int(n * s // t) for n, s, t in zip(ct.size[:2], ct.spacing[:2], spacing[:2], strict=True)]
    nz = int((ct.size[2] - 1) * ct.spacing[2] // spacing[2]) + 1
    return _Grid((edge[0] + spacing[0] / 2, edge[1] + spacing[1] / 2, ct.origin[2]), spacing,
                 (size_xy[0], size_xy[1], nz))


class _Resampler:
    """From the CT grid onto another PET grid (head-first (z, y, x) arrays in and out): ``mean`` averages the
    volume over each PET voxel (linear samples at the 8 points ±¼ voxel from its centre), ``nearest`` samples it
    at the centre."""

    def __init__(self, source: _Grid, target: _Grid) -> None:
        self.source, self.target = source, target

    def _reference(self, shift) -> sitk.Image:
        reference = self.target.image(np.zeros(self.target.size[::-1], np.uint8))
        reference.SetOrigin(tuple(o + d for o, d in zip(reference.GetOrigin(), shift, strict=True)))
        return reference

    def mean(self, volume: np.ndarray) -> np.ndarray:
        image = self.source.image(volume.astype(np.float32))
        quarter = [s / 4 for s in self.target.spacing]
        total = None
        for sign in np.ndindex(2, 2, 2):
            shift = [q * (2 * b - 1) for q, b in zip(quarter, sign, strict=True)]
            sample = sitk.GetArrayFromImage(sitk.Resample(image, self._reference(shift), sitk.Transform(),
                                                          sitk.sitkLinear, 0.0, sitk.sitkFloat32))
            total = sample if total is None else total + sample
        return np.ascontiguousarray((total / 8.0)[::-1]).astype(np.float32)

    def nearest(self, volume: np.ndarray) -> np.ndarray:
        resampled = sitk.Resample(self.source.image(volume), self._reference((0.0, 0.0, 0.0)), sitk.Transform(),
                                  sitk.sitkNearestNeighbor, 0)
        return np.ascontiguousarray(sitk.GetArrayFromImage(resampled)[::-1])


def _noise_sd(pet_suv: np.ndarray, acq: Acquisition, first_slice: int = 0, voxel_mm=PET_SPACING_MM,
              ) -> np.ndarray:
    """Noise standard deviation (SUV) before the post-filter: variance ∝ activity / counts-per-bed; later beds
    decay more. ``pet_suv``: the blurred noise-free PET from slice ``first_slice`` of the scan on.

    Calibrated so that liver (SUV 5) reaches CoV :data:`REFERENCE_LIVER_COV` after the 0.5-voxel
    post-filter at reference conditions (150 MBq, 60 min uptake, 75 kg, 180 s per bed), on any voxel size
    (``voxel_mm``, x, y, z: a site reconstructs its voxels to a similar noise level). A background
    term (randoms and scatter, SUV 0.5 equivalent) keeps cold regions noisy.
    """
    reference = 150e6 * 2 ** (-3600 / GA68_HALF_LIFE_S) / 75e3 * 180.0  # Bq per g × s
    post_filter_gain = 1 / np.sqrt(8 * np.pi**1.5 * 0.5**3)  # sd reduction of the 0.5-voxel filter
    slices = np.arange(first_slice, first_slice + pet_suv.shape[0])
    bed_of_slice = np.minimum((slices * voxel_mm[2]) // (BED_LENGTH_MM * (1 - BED_OVERLAP)),
                              max(acq.n_beds - 1, 0))
    bed_decay = 2 ** (-bed_of_slice * acq.frame_duration_s / GA68_HALF_LIFE_S)
    counts = acq.decayed_activity_bq / (acq.weight_kg * 1e3) * acq.frame_duration_s * bed_decay
    scale = np.sqrt(reference / counts).astype(np.float32)[:, None, None]
    return REFERENCE_LIVER_COV / post_filter_gain * np.sqrt((pet_suv + 0.5) * 5.0) * scale


def _ideal_snrs(pieces: dict[int, list], ct_shape: tuple[int, int, int], acq: Acquisition,
                noise_free: np.ndarray, noise_scale: float) -> dict[int, float | None]:
    """Ideal-observer detectability d' of each lesion at this scan (``phantom.detectability``); None without
    noise (unbounded)."""
    if noise_scale <= 0:
        return dict.fromkeys(pieces)
    return lesion_snrs(pieces, ct_shape, _psf_sigma_voxels(acq), noise_free,
                       lambda background, first: _noise_sd(np.maximum(background, 0.0), acq, first) * noise_scale)


def _non_attenuation_corrected(pet_suv: np.ndarray, organs: np.ndarray, voxel_mm=PET_SPACING_MM) -> np.ndarray:
    """A NAC-like image: surface-weighted, interior suppressed (only for the decoy series)."""
    body = organs[::2, ::2, ::2] > 0  # 8 mm is ample for a decoy, and 8× faster
    depth = ndimage.distance_transform_edt(body, sampling=[2 * v for v in voxel_mm[::-1]])
    depth = np.repeat(np.repeat(np.repeat(depth, 2, 0), 2, 1), 2, 2)[tuple(slice(0, n) for n in organs.shape)]
    return (pet_suv * np.exp(-depth / 60.0) * 2.0).astype(np.float32)


def _finish_truth(truth: dict[int, dict], scan: SimulatedTimepoint, snrs: dict[int, float | None],
                  ) -> dict[int, dict]:
    """Add centroid (LPS mm, of the truth mask on the PET grid), true SUVmax and the ideal observer's d'
    (``ideal_snr``, :mod:`~LesionResponseLib.phantom.detectability`) per lesion."""
    labels = sitk.GetArrayViewFromImage(scan.lesion_labels)
    true = sitk.GetArrayViewFromImage(scan.pet_true)
    out = {}
    for lesion_id, entry in truth.items():
        mask = np.isin(labels, sorted(entry["labels"]))
        if not mask.any():
            continue
        idx = np.argwhere(mask).mean(axis=0)  # (z, y, x)
        centroid = scan.lesion_labels.TransformContinuousIndexToPhysicalPoint((idx[2], idx[1], idx[0]))
        out[lesion_id] = {
            "present": True, "labels": sorted(int(v) for v in entry["labels"]),
            "centroid_mm": [round(float(v), 2) for v in centroid],
            "volume_ml": round(entry["volume_ml"], 4), "suv_max": round(float(true[mask].max()), 3),
            "suv_total": round(entry["suv_total"], 4),
            "ideal_snr": None if snrs.get(lesion_id) is None else round(snrs[lesion_id], 3),
        }
    return out


# ------------------------------------------------------------------------------------------------- truth


def _category(reference: float, value: float, lower: float = -30.0, upper: float = 30.0) -> str:
    if reference <= 0 and value <= 0:
        return "absent"
    if reference <= 0:
        return "new"
    if value <= 0:
        return "disappearing"
    delta = 100.0 * (value - reference) / reference
    return "decreasing" if delta < lower else "increasing" if delta > upper else "stable"


def build_truth(patient: SimulatedPatient) -> dict:
    """The truth dict of docs/ARCHITECTURE.md (without file names and UIDs, added by the writer)."""
    n = len(patient.timepoints)
    lesions_out = []
    track_totals: dict[int, list[float]] = {}
    for le in patient.lesions:
        tps = {}
        for scan in patient.timepoints:
            entry = scan.lesion_truth.get(le.lesion_id)
            tps[str(scan.index)] = entry if entry else {"present": False, "labels": [], "centroid_mm": None,
                                                        "volume_ml": 0.0, "suv_max": 0.0, "suv_total": 0.0,
                                                        "ideal_snr": 0.0}
            totals = track_totals.setdefault(le.track_id, [0.0] * n)
            totals[scan.index] += tps[str(scan.index)]["suv_total"]
        lesions_out.append({"lesion_id": le.lesion_id, "track_id": le.track_id, "site": le.site, "kind": le.kind,
                            "profile": le.profile, "timepoints": tps})
        if le.neighbour_of is not None:  # only with the split_neighbours option: default truth files are unchanged
            lesions_out[-1]["neighbour_of"] = le.neighbour_of
    track_categories = {tid: {str(k): _category(tot[0], tot[k]) for k in range(1, n)}
                        for tid, tot in track_totals.items()}
    for entry in lesions_out:
        entry["categories"] = track_categories[entry["track_id"]]
    heterogeneous = {}
    for k in range(1, n):
        cats = {c[str(k)] for c in track_categories.values()}
        heterogeneous[str(k)] = bool(cats & {"new", "increasing"}) and bool(cats & {"decreasing", "disappearing"})
    return {"schema_version": 1, "phantom_version": PHANTOM_VERSION, "seed": patient.seed, "patient_id": patient.patient_id, "n_timepoints": n,
            "timepoints": [_timepoint_truth(s) for s in patient.timepoints], "lesions": lesions_out,
            "tracks": {str(t): {"suv_total": [round(v, 4) for v in tot], "categories": track_categories[t]}
                       for t, tot in track_totals.items()},
            "heterogeneous": heterogeneous}


def _timepoint_truth(scan: SimulatedTimepoint) -> dict:
    a = scan.acquisition
    return {"index": scan.index, "study_date": a.scan_start.strftime("%Y%m%d"),
            "scan_datetime": a.scan_start.isoformat(), "injection_datetime": a.injection.isoformat(),
            "suv_factor": a.suv_factor, "weight_kg": a.weight_kg, "height_m": a.height_m, "sex": a.sex,
            "injected_activity_bq": a.injected_activity_bq, "uptake_time_s": a.uptake_time_s,
            "psf_fwhm_mm": round(a.psf_fwhm_mm, 3), "arms_up": scan.body.arms_up,
            "bladder_radius_mm": round(scan.body.bladder_radius_mm, 1),
            "organ_suv": {name: round(value, 4) for name, value in scan.organ_suv.items()},
            "patient_to_world": scan.motion.to_dict()}
