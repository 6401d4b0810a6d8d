"""Lesions of the phantom and their trajectories of activity and size over the time points.

Each lesion has a *relative SUVtotal* per time point (baseline = 1; 0 = absent). Trajectories are drawn so
that every response category is exercised and is unambiguous despite measurement noise: "stable" stays
within ±8 % of the reference, "increasing"/"decreasing" change by at least +60 % / −40 %, far from the
±30 % decision thresholds (docs/DOMAIN.md §1). A change in SUVtotal ``s`` is shared between volume (``s^0.6``)
and activity concentration (``s^0.4``), as tumours both shrink and lose receptor density under PRRT.

Special trajectories reproduce the patterns of Santoro-Fernandes et al. 2025: non-monotonic change, new
lesions that later resolve, disappearing lesions that return, a lesion that splits in two, two that merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from LesionResponseLib.phantom.anatomy import (
    LESION_SITES,
    SITE_DIAMETER_MM,
    SITE_HU,
    BodyParameters,
    Shape,
    body_shapes,
)
from LesionResponseLib.phantom.errors import bad_option

STABLE_BAND = (0.92, 1.08)
INCREASE_STEP = (1.6, 2.0)
DECREASE_STEP = (0.4, 0.6)
SPLIT_GAP_MM = 14.0  # gap between split halves: > 2 PSF FWHM so they are distinct ROIs
MERGE_GAP_MM = 12.0  # gap between merge partners before they merge
#: Harder-patient options (all off by default; off, the same seed renders exactly the patient it always did).
SMALL_VOLUME_ML = (0.1, 4.0)  # "small lesions": baseline volume drawn log-uniformly in this range (mL)
LOW_CONTRAST_SUV = (6.0, 18.0)  # "low contrast": lesion SUVmean range, 1.2-4x the liver's (~5) instead of 8-45
HOT_ORGANS = ("spleen", "kidney", "adrenal")  # docs/DOMAIN.md §5: the organs hotter than most lesions' surroundings
NEAR_ORGAN_GAP_MM = (2.0, 6.0)  # "near organs": gap between the lesion and the organ surface, under one PSF FWHM
#: "split neighbours": diameter range (mm) of the stable lesion placed beside each extra splitting lesion (small to
#: mid-sized liver metastases, SITE_DIAMETER_MM's liver range without its largest, which would not fit beside a split)
SPLIT_NEIGHBOUR_DIAMETER_MM = (8.0, 20.0)
#: Smallest surface gap (mm) between that neighbour and the splitting lesion or its pieces at any scan: one PSF FWHM
#: (5.5-6.5 mm), so the two stay separate lesion-ROIs (a segmentation that merges them is not the matching's error).
SPLIT_NEIGHBOUR_MIN_GAP_MM = 6.0


@dataclass(frozen=True)
class LesionOptions:
    """Options for harder benchmark patients (``simulate_patient``/``generate_patient`` keyword arguments).

    ``small_lesions``: baseline volumes 0.1-4 mL (log-uniform) instead of the site's diameter range.
    ``low_contrast``: lesion SUVmean 6-18 instead of 8-45 (lesion-to-liver ratio ~1.2-4).
    ``near_organs``: the fraction (0-1) of lesions placed 2-6 mm from the surface of a spleen, kidney or adrenal.
    ``split_neighbours``: centre distances (mm); for each, one more liver lesion that splits at the first follow-up
    and a stable lesion (present at every scan) whose centre lies that far from the splitting lesion's centre, in a
    random direction at least :data:`SPLIT_NEIGHBOUR_MIN_GAP_MM` from the lesion and its pieces (the matching must
    keep the neighbour out of the split's track).
    Split and merge lesions keep their sizes (they must be large enough to split).
    """

    small_lesions: bool = False
    low_contrast: bool = False
    near_organs: float = 0.0
    split_neighbours: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.near_organs <= 1.0:
            raise bad_option("near_organs", self.near_organs, "a fraction between 0 and 1")
        if any(not 10.0 <= d <= 80.0 for d in self.split_neighbours):
            raise bad_option("split_neighbours", self.split_neighbours, "centre distances of 10-80 mm")


@dataclass
class Blob:
    """One ellipsoidal piece of lesion tissue in the anatomical frame at one time point."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    suv: float  # mean SUV of the blob
    label: int  # value in the truth label map
    profile: str = "uniform"  # uniform | peaked | necrotic | rim
    # lobulated surface: bumps (unit direction x, y, z, amplitude as a share of the radius); () = ellipsoid
    lobes: tuple[tuple[float, float, float, float], ...] = ()


@dataclass
class Lesion:
    """A lesion with its trajectory; ``track_id`` is the tracking truth (split/merge parts share it)."""

    lesion_id: int
    track_id: int
    site: str
    kind: str
    center: tuple[float, float, float]
    radii: tuple[float, float, float]  # at relative SUVtotal 1
    suv: float  # mean SUV at relative SUVtotal 1
    hu: float
    profile: str
    relative: list[float] = field(default_factory=list)  # relative SUVtotal per time point
    split_from: int | None = None  # first time point at which the lesion is split in two
    merge_partner: int | None = None  # lesion id of the partner it merges with
    merge_from: int | None = None  # first time point at which it is merged
    lobes: tuple[tuple[float, float, float, float], ...] = ()  # lobulated surface (``Blob.lobes``; phantom.domain)
    neighbour_of: int | None = None  # lesion id of the splitting lesion it was placed beside (split_neighbours)

    def split_offset(self, radii: tuple[float, float, float]) -> float:
        """Distance (mm, along x) of each split piece's centre from the lesion's centre, for ``radii``."""
        return radii[0] * 0.5 ** (1 / 3) + SPLIT_GAP_MM / 2

    def blobs(self, timepoint: int) -> list[Blob]:
        """The blobs of this lesion at a time point (empty when absent)."""
        s = self.relative[timepoint]
        if s <= 0:
            return []
        r_scale, suv = s ** (0.6 / 3), self.suv * s**0.4
        radii = tuple(r * r_scale for r in self.radii)
        if self.split_from is not None and timepoint >= self.split_from:
            return self._split_blobs(radii, suv)
        if self.merge_from is not None and timepoint >= self.merge_from:
            radii = tuple(r * 1.25 for r in radii)  # merging lesions grow into each other
        return [Blob(self.center, radii, suv, self.lesion_id, self.profile, self.lobes)]

    def _split_blobs(self, radii, suv) -> list[Blob]:
        half = tuple(r * 0.5 ** (1 / 3) for r in radii)  # two halves of equal total volume
        offset = self.split_offset(radii)
        cx, cy, cz = self.center
        return [Blob((cx - offset, cy, cz), half, suv, self.lesion_id, "uniform"),
                Blob((cx + offset, cy, cz), half, suv, 1000 + self.lesion_id, "uniform")]


def _trajectory(kind: str, n: int, rng: np.random.Generator) -> list[float]:
    """Relative SUVtotal per time point for a trajectory kind (see module docstring)."""
    def stable():
        return rng.uniform(*STABLE_BAND)

    if kind == "new":
        return [0.0] + [1.0] * (n - 1)
    if kind == "new-then-resolved":
        return [0.0, 1.0] + [0.0] * (n - 2)
    values = [1.0]
    for k in range(1, n):
        prev = values[-1]
        if kind == "stable":
            values.append(stable())
        elif kind == "decreasing":
            values.append(max(prev * rng.uniform(*DECREASE_STEP), 0.08))
        elif kind == "increasing":
            values.append(min(prev * rng.uniform(*INCREASE_STEP), 6.0))
        elif kind == "non-monotonic":
            values.append(rng.uniform(0.35, 0.5) if k % 2 == 1 else stable())
        elif kind == "disappearing":
            values.append(0.0 if k == n - 1 or prev < 0.6 else rng.uniform(*DECREASE_STEP))
        elif kind == "disappeared-then-returned":
            values.append(0.0 if k == 1 else stable())
        elif kind in ("split", "merge"):
            values.append(stable())
        else:
            raise ValueError(f"unknown trajectory kind {kind!r}")
    return values


def _kinds(n_lesions: int, n_timepoints: int, rng: np.random.Generator) -> list[str]:
    """Trajectory kinds: every category and pattern once, the rest drawn at clinical-like proportions."""
    required = ["split", "merge", "merge", "new", "disappearing", "increasing", "decreasing", "stable"]
    if n_timepoints >= 3:
        required += ["non-monotonic", "new-then-resolved", "disappeared-then-returned"]
    pool = ["decreasing", "stable", "increasing", "non-monotonic", "disappearing", "new"]
    weights = np.array([0.35, 0.25, 0.12, 0.12 if n_timepoints >= 3 else 0.0, 0.1, 0.06])
    extra = rng.choice(pool, size=max(n_lesions - len(required), 0), p=weights / weights.sum())
    return required + [str(k) for k in extra]


def make_lesions(seed: int, n_timepoints: int, body: BodyParameters, n_lesions: int | None = None,
                 options: LesionOptions | None = None) -> list[Lesion]:
    """Draw 10–60 lesions (default 12–40) with sites, sizes, SUVs and trajectories, deterministic by seed.

    Lesions are placed in the reference frame without overlap (gap ≥ 15 mm), except merge partners,
    which start :data:`MERGE_GAP_MM` apart. ``options``: harder patients (:class:`LesionOptions`).
    ``n_lesions`` 0: a patient without lesions (a negative scan, a complete response).
    """
    options = options or LesionOptions()
    rng = np.random.default_rng(seed * 7919 + 17)
    n = int(n_lesions if n_lesions is not None else rng.integers(12, 41))
    if not 0 <= n <= 200:
        raise bad_option("n_lesions", n, "between 0 and 200 (10–60 is clinical)")
    if n == 0:
        return []
    kinds = _kinds(n, n_timepoints, rng)[:max(n, 1)]
    sites = list(LESION_SITES)
    site_p = np.array([0.4, 0.25, 0.15, 0.08, 0.12])
    placed: list[Lesion] = []
    next_id = 1
    for distance in options.split_neighbours:  # first, while the liver has room (none by default: seeds unchanged)
        pair = _split_beside_neighbour(distance, next_id, placed=placed, rng=rng, n_timepoints=n_timepoints,
                                       body=body, options=options)
        placed.extend(pair)
        next_id += len(pair)
    for kind in kinds:
        if kind == "merge" and placed and placed[-1].kind == "merge" and placed[-1].merge_partner is None:
            lesion = _merge_partner(placed[-1], next_id, rng, n_timepoints, options)
        else:
            site = "liver" if kind in ("split", "merge") else str(rng.choice(sites, p=site_p))
            lesion = None
            if options.near_organs and kind not in ("split", "merge") and rng.random() < options.near_organs:
                lesion = _place_near_organ(kind, next_id, placed, rng=rng, n_timepoints=n_timepoints,
                                           body=body, options=options)
            if lesion is None:
                lesion = _place(site, kind, next_id, placed=placed, rng=rng, n_timepoints=n_timepoints,
                                body=body, options=options)
        if lesion is None:
            continue
        placed.append(lesion)
        next_id += 1
    return placed


def _random_size(site: str, kind: str, rng: np.random.Generator, options: LesionOptions | None = None,
                 ) -> tuple[float, float, float]:
    if kind in ("split", "merge"):
        diameter = float(np.exp(rng.uniform(np.log(22), np.log(32))))
    elif options is not None and options.small_lesions:  # a sphere of log-uniform volume: 5.8-19.7 mm
        volume_ml = float(np.exp(rng.uniform(*np.log(SMALL_VOLUME_ML))))
        diameter = float((6.0 * volume_ml / np.pi) ** (1 / 3) * 10.0)
    else:
        lo, hi = SITE_DIAMETER_MM[site]
        diameter = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return tuple(diameter / 2 * rng.uniform(0.85, 1.15) for _ in range(3))


def _random_suv(rng: np.random.Generator, options: LesionOptions | None = None) -> tuple[float, str]:
    low, high = LOW_CONTRAST_SUV if options is not None and options.low_contrast else (8, 45)
    suv = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    profile = str(rng.choice(["uniform", "peaked", "necrotic"], p=[0.6, 0.3, 0.1]))
    return suv, profile


def _place(site: str, kind: str, lesion_id: int, *, placed: list[Lesion], rng: np.random.Generator,
           n_timepoints: int, body: BodyParameters, options: LesionOptions | None = None) -> Lesion | None:
    """Place a lesion inside a random region of its site (reference frame, scaled to the body habitus)."""
    scale = np.array([body.xy_scale, body.xy_scale, body.z_scale])
    regions = LESION_SITES[site]
    for _ in range(200):
        region = regions[rng.integers(len(regions))]
        c = np.asarray(region.center) + np.asarray(region.radii) * rng.uniform(-1, 1, 3)
        if not region.inside(*c):
            continue
        c = c * scale
        radii = _random_size(site, kind, rng, options)
        if _crowded(c, radii, kind, placed):
            continue
        lesion = _new_lesion(lesion_id, site, kind, c=c, radii=radii, rng=rng, n_timepoints=n_timepoints,
                             options=options)
        if kind == "split":
            lesion.split_from = 1
            lesion.profile = "uniform"
        if kind == "merge":
            lesion.merge_from = n_timepoints - 1
        return lesion
    return None


def _crowded(c: np.ndarray, radii, kind: str, placed: list[Lesion]) -> bool:
    reach = max(radii) * (2.2 if kind == "split" else 1.6)
    return any(np.linalg.norm(c - np.asarray(o.center)) < reach + max(o.radii) * 1.6 + 15 for o in placed)


def _new_lesion(lesion_id: int, site: str, kind: str, *, c: np.ndarray, radii, rng: np.random.Generator,
                n_timepoints: int, options: LesionOptions | None) -> Lesion:
    suv, profile = _random_suv(rng, options)
    if max(radii) < 12 and profile == "necrotic":
        profile = "uniform"
    relative = _trajectory(kind, n_timepoints, rng)
    return Lesion(lesion_id, lesion_id, site, kind, tuple(float(v) for v in c), radii, suv, SITE_HU[site],
                  profile, relative)


def _tissue_at(shapes: list[Shape], point: np.ndarray) -> str:
    """The tissue painted last at ``point`` (anatomical frame, mm), ``"air"`` outside the body."""
    tissue = "air"
    for shape in shapes:
        if shape.inside(*(np.asarray([v]) for v in point))[0]:
            tissue = shape.tissue
    return tissue


def _place_near_organ(kind: str, lesion_id: int, placed: list[Lesion], *, rng: np.random.Generator,
                      n_timepoints: int, body: BodyParameters, options: LesionOptions) -> Lesion | None:
    """A lesion 2-6 mm from the surface of a hot organ, in the soft tissue (or liver, pancreas) next to it."""
    shapes = body_shapes(body)
    organs = [s for s in shapes if s.tissue in HOT_ORGANS]
    for _ in range(100):
        organ = organs[int(rng.integers(len(organs)))]
        u = rng.normal(size=3)
        centre, r = np.asarray(organ.center), np.asarray(organ.radii)
        surface = centre + u / np.sqrt(np.sum((u / r) ** 2))
        normal = (surface - centre) / r**2
        normal /= np.linalg.norm(normal)
        radii = _random_size("lymph node", kind, rng, options)
        c = surface + normal * (max(radii) + rng.uniform(*NEAR_ORGAN_GAP_MM))
        tissue = _tissue_at(shapes, c)
        if tissue not in ("fat", "muscle", "liver", "pancreas") or _crowded(c, radii, kind, placed):
            continue
        site = {"liver": "liver", "pancreas": "pancreas"}.get(tissue, "lymph node")
        return _new_lesion(lesion_id, site, kind, c=c, radii=radii, rng=rng, n_timepoints=n_timepoints,
                           options=options)
    return None


def _split_beside_neighbour(distance: float, lesion_id: int, *, placed: list[Lesion], rng: np.random.Generator,
                            n_timepoints: int, body: BodyParameters, options: LesionOptions) -> list[Lesion]:
    """A liver lesion splitting at the first follow-up and a stable neighbour ``distance`` mm (centres) from it."""
    region = LESION_SITES["liver"][0]
    scale = np.array([body.xy_scale, body.xy_scale, body.z_scale])
    for _ in range(100):
        split = _place("liver", "split", lesion_id, placed=placed, rng=rng, n_timepoints=n_timepoints, body=body,
                       options=options)
        if split is None:  # no room found in 200 draws: the liver is crowded, draw again
            continue
        for _ in range(50):  # directions around this lesion before another place is tried
            diameter = float(np.exp(rng.uniform(*np.log(SPLIT_NEIGHBOUR_DIAMETER_MM))))
            radii = tuple(diameter / 2 * rng.uniform(0.85, 1.15) for _ in range(3))
            direction = rng.normal(size=3)
            centre = np.asarray(split.center) + distance * direction / np.linalg.norm(direction)
            neighbour = _new_lesion(lesion_id + 1, "liver", "stable", c=centre, radii=radii, rng=rng,
                                    n_timepoints=n_timepoints, options=options)
            neighbour.neighbour_of = lesion_id
            if region.inside(*(centre / scale)) and _apart(split, neighbour) and \
                    not _crowded(centre, radii, "stable", placed):
                return [split, neighbour]
    raise bad_option("split_neighbours", distance, "a distance that fits in the liver beside the other lesions "
                     "(fewer lesions or fewer split neighbours)")


def _apart(split: Lesion, neighbour: Lesion) -> bool:
    """Whether the neighbour keeps :data:`SPLIT_NEIGHBOUR_MIN_GAP_MM` from the splitting lesion at the baseline and
    from its pieces at every later scan (largest radii of each, at the largest size they reach)."""
    grow = max(split.relative) ** (0.6 / 3)  # the radius scale of blobs() at the largest relative SUVtotal
    reach = max(neighbour.radii) * max(neighbour.relative) ** (0.6 / 3) + SPLIT_NEIGHBOUR_MIN_GAP_MM
    parent = np.asarray(split.center)
    radii = tuple(r * grow for r in split.radii)
    offset = split.split_offset(radii)
    pieces = [parent + [side * offset, 0.0, 0.0] for side in (-1, 1)]
    centre = np.asarray(neighbour.center)
    return (np.linalg.norm(centre - parent) >= max(radii) + reach
            and all(np.linalg.norm(centre - p) >= max(radii) * 0.5 ** (1 / 3) + reach for p in pieces))


def _merge_partner(first: Lesion, lesion_id: int, rng: np.random.Generator, n_timepoints: int,
                   options: LesionOptions | None = None) -> Lesion:
    radii = _random_size(first.site, "merge", rng, options)
    distance = first.radii[2] + radii[2] + MERGE_GAP_MM
    c = (first.center[0], first.center[1], first.center[2] + distance)
    suv, _ = _random_suv(rng, options)
    first.merge_partner = lesion_id
    relative = _trajectory("merge", n_timepoints, rng)
    return Lesion(lesion_id, first.track_id, first.site, "merge", c, radii, suv, first.hu, "uniform", relative,
                  merge_partner=first.lesion_id, merge_from=first.merge_from)


def bridge_blob(a: Lesion, b: Lesion, timepoint: int) -> Blob | None:
    """The tissue joining two merged lesions (labelled as the first), or None before they merge."""
    if a.merge_from is None or timepoint < a.merge_from or not a.blobs(timepoint) or not b.blobs(timepoint):
        return None
    ba, bb = a.blobs(timepoint)[0], b.blobs(timepoint)[0]
    center = tuple((p + q) / 2 for p, q in zip(ba.center, bb.center, strict=True))
    gap = abs(bb.center[2] - ba.center[2])
    radius = 0.6 * min(min(ba.radii), min(bb.radii))
    return Blob(center, (radius, radius, gap / 2), (ba.suv + bb.suv) / 2, a.lesion_id, "uniform")


def profile_factor(profile: str, rho: np.ndarray) -> np.ndarray:
    """Activity modulation within a blob vs normalised radius ``rho`` (0 centre, 1 edge); mean ≈ 1."""
    if profile == "peaked":  # heterogeneous: hot centre (≈1.5× mean) to cooler rim
        return 1.5 - 0.85 * rho**2
    if profile == "necrotic":  # cold necrotic core (15 % uptake) inside a viable rim
        return np.where(rho < 0.5, 0.15, 1.12)
    if profile == "rim":  # large necrotic core (inner 60 % of the radius, 10 %) inside a thin enhancing rim
        return np.where(rho < RIM_CORE, RIM_CORE_UPTAKE, RIM_UPTAKE)
    return np.ones_like(rho)


RIM_CORE = 0.6  # core radius / lesion radius of the ``rim`` profile (phantom.domain)
RIM_CORE_UPTAKE = 0.1
RIM_UPTAKE = (1.0 - RIM_CORE_UPTAKE * RIM_CORE**3) / (1.0 - RIM_CORE**3)  # mean over the volume = 1


#: Largest surface radius of a lobulated lesion, as a multiple of its ellipsoid's: below the 1.6 x radius each
#: lesion keeps clear of the others when placed (``_crowded``), so lobes never touch a neighbour.
LOBE_CAP = 1.5


def lobe_scale(blob: Blob, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> np.ndarray | float:
    """The surface radius, as a multiple of the ellipsoid's, in the direction of the offsets (``dx, dy, dz``: from
    the centre, in radii): 1 + the sum of the lobes' bumps ``amplitude x max(0, cos angle)^4``, at most
    :data:`LOBE_CAP`."""
    if not blob.lobes:
        return 1.0
    norm = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-9
    scale = np.ones(np.broadcast_shapes(dx.shape, dy.shape, dz.shape), np.float32)
    for ux, uy, uz, amplitude in blob.lobes:
        cosine = (dx * ux + dy * uy + dz * uz) / norm
        scale += amplitude * np.maximum(cosine, 0.0) ** 4
    return np.minimum(scale, LOBE_CAP)


def max_lobe_scale(blob: Blob) -> float:
    """The largest :func:`lobe_scale` of ``blob`` (an upper bound: every bump at its peak)."""
    return min(1.0 + sum(lobe[3] for lobe in blob.lobes), LOBE_CAP)
