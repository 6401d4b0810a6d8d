"""Analytic whole-body anatomy of the phantom: tissues, their DOTATATE uptake and CT numbers, and shapes.

The body is built from super-ellipsoids in an *anatomical frame* (DICOM LPS axes, mm; the vertex of the
skull at z = 0, feet towards negative z). Shapes are painted in order, later ones over earlier ones, so
organs sit inside the body, marrow inside bone, and so on.

Uptake values are typical SUVmean for [68Ga]Ga-DOTATATE (``docs/DOMAIN.md`` §5: spleen the hottest
organ, then kidneys, adrenals, pituitary, liver ~5, uncinate process, bowel, blood pool ~1.5, muscle < 1,
lungs < 0.5). CT numbers are textbook Hounsfield units.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Tissue:
    """A tissue class: its label in the organ map, CT number (HU) and typical SUVmean."""

    name: str
    label: int
    hu: float
    suv: float
    suv_spread: float = 0.0  # relative between-scan variability of uptake (1 sd)


TISSUES: tuple[Tissue, ...] = (
    Tissue("air", 0, -1000.0, 0.0),
    Tissue("fat", 1, -100.0, 0.25),
    Tissue("muscle", 2, 45.0, 0.6),
    Tissue("lung", 3, -820.0, 0.3),
    Tissue("liver", 4, 60.0, 5.0, 0.15),
    Tissue("spleen", 5, 50.0, 18.0, 0.15),
    Tissue("kidney", 6, 35.0, 13.0, 0.15),
    Tissue("adrenal", 7, 30.0, 11.0, 0.15),
    Tissue("pituitary", 8, 40.0, 8.0, 0.15),
    Tissue("pancreas", 9, 40.0, 2.0, 0.1),
    Tissue("uncinate", 10, 40.0, 6.5, 0.15),
    Tissue("bowel", 11, 20.0, 3.0, 0.2),
    Tissue("bladder", 12, 5.0, 40.0, 0.4),
    Tissue("blood", 13, 45.0, 1.5, 0.1),
    Tissue("bone", 14, 900.0, 0.4),
    Tissue("marrow", 15, 250.0, 1.2, 0.1),
    Tissue("brain", 16, 35.0, 0.15),
    Tissue("thyroid", 17, 50.0, 3.0, 0.2),
)
TISSUE_BY_NAME = {t.name: t for t in TISSUES}

#: Organ map labels (``truth/tp{k}_organs.nii.gz``); 0 = outside the body.
ORGAN_LABELS: dict[str, int] = {t.name: t.label for t in TISSUES if t.label > 0}

#: Organs whose uptake is physiological and must never be called a lesion (docs/DOMAIN.md §5).
PHYSIOLOGICAL_ORGANS = ("spleen", "kidney", "adrenal", "pituitary", "liver", "uncinate", "bowel", "bladder")


@dataclass(frozen=True)
class Shape:
    """A super-ellipsoid ``|dx/rx|^2 + |dy/ry|^2 + |dz/rz|^p <= 1`` (p = 2: ellipsoid; large p: a tube).

    ``rib_period_mm`` > 0 keeps only bands along z (ribs); ``tissue`` names a :data:`TISSUES` entry.
    """

    tissue: str
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    pz: float = 2.0
    rib_period_mm: float = 0.0

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box (low, high corners) in the anatomical frame, mm."""
        c, r = np.asarray(self.center), np.asarray(self.radii)
        return c - r, c + r

    def inside(self, ax: np.ndarray, ay: np.ndarray, az: np.ndarray) -> np.ndarray:
        """Boolean mask of the anatomical points (mm) inside the shape."""
        cx, cy, cz = self.center
        rx, ry, rz = self.radii
        value = ((ax - cx) / rx) ** 2 + ((ay - cy) / ry) ** 2 + np.abs((az - cz) / rz) ** self.pz
        mask = value <= 1.0
        if self.rib_period_mm > 0:
            mask &= np.cos(2 * np.pi * (az - cz) / self.rib_period_mm) > 0.2
        return mask


def _shell(tissue_out: str, tissue_in: str, center, *, radii, thickness: float, pz: float = 2.0) -> list[Shape]:
    inner = tuple(max(r - thickness, 1.0) for r in radii)
    return [Shape(tissue_out, center, tuple(radii), pz), Shape(tissue_in, center, inner, pz)]


@dataclass(frozen=True)
class BodyParameters:
    """Per-patient body habitus and per-scan variable anatomy (arms, bladder, bowel)."""

    height_m: float = 1.75
    weight_kg: float = 75.0
    arms_up: bool = False
    bladder_radius_mm: float = 35.0
    bowel_seed: int = 0

    @property
    def xy_scale(self) -> float:
        """In-plane scale from body-mass index (BMI 24.5 → 1)."""
        bmi = self.weight_kg / self.height_m**2
        return float(np.clip((bmi / 24.5) ** 0.5, 0.8, 1.3))

    @property
    def z_scale(self) -> float:
        return self.height_m / 1.75


def body_shapes(body: BodyParameters) -> list[Shape]:
    """All shapes of one scan's anatomy, in painting order, scaled to the patient's habitus."""
    shapes = _reference_shapes(body)
    sx, sz = body.xy_scale, body.z_scale
    return [
        replace(s, center=(s.center[0] * sx, s.center[1] * sx, s.center[2] * sz),
                radii=(s.radii[0] * sx, s.radii[1] * sx, s.radii[2] * sz))
        for s in shapes
    ]


def _reference_shapes(body: BodyParameters) -> list[Shape]:
    """The reference (1.75 m, BMI 24.5) anatomy. Order matters: later shapes paint over earlier ones."""
    S = Shape
    shapes: list[Shape] = [
        # body envelope (subcutaneous fat) and muscle wall
        S("fat", (0, 0, -105), (78, 98, 108)),  # head
        S("fat", (0, 10, -240), (58, 58, 45), pz=6),  # neck
        S("fat", (0, 0, -560), (168, 112, 300), pz=6),  # trunk
        S("fat", (88, 5, -930), (78, 82, 150), pz=6),  # left thigh
        S("fat", (-88, 5, -930), (78, 82, 150), pz=6),  # right thigh
        S("muscle", (0, 0, -560), (150, 96, 292), pz=6),
        S("muscle", (0, 12, -240), (45, 45, 44), pz=6),
        S("muscle", (88, 5, -935), (62, 66, 145), pz=6),
        S("muscle", (-88, 5, -935), (62, 66, 145), pz=6),
        # head
        *_shell("bone", "brain", (0, 0, -100), radii=(72, 90, 98), thickness=7),
        S("pituitary", (0, 8, -122), (5, 5, 4)),
        S("thyroid", (9, -22, -262), (9, 8, 16)),
        S("thyroid", (-9, -22, -262), (9, 8, 16)),
        # thorax
        S("bone", (0, 10, -420), (150, 100, 150), rib_period_mm=26),
        S("muscle", (0, 10, -420), (142, 92, 150)),
        S("lung", (82, 12, -405), (64, 78, 122)),
        S("lung", (-84, 12, -398), (68, 78, 118)),
        S("blood", (22, -18, -475), (52, 48, 52)),  # heart chambers
        S("blood", (12, 38, -640), (11, 11, 220), pz=10),  # aorta
        S("blood", (-18, 30, -650), (10, 10, 200), pz=10),  # vena cava
        # upper abdomen
        S("liver", (-70, 5, -570), (88, 82, 78)),  # right lobe, dome under the right lung
        S("liver", (2, -32, -548), (58, 36, 32)),  # left lobe, anterior, across the midline
        S("spleen", (98, 52, -548), (38, 44, 54)),
        S("kidney", (64, 58, -648), (28, 27, 55)),
        S("kidney", (-66, 58, -662), (28, 27, 55)),
        S("adrenal", (48, 46, -582), (11, 6, 15)),
        S("adrenal", (-50, 46, -594), (11, 6, 15)),
        S("pancreas", (16, 8, -612), (62, 13, 13)),
        S("uncinate", (-30, 12, -632), (13, 12, 14)),
    ]
    shapes += _bowel_shapes(body.bowel_seed)
    shapes += [
        S("bladder", (0, -20, -835), (body.bladder_radius_mm, 0.8 * body.bladder_radius_mm,
                                      0.7 * body.bladder_radius_mm)),
        # skeleton: spine, pelvis, femurs, with marrow
        S("bone", (0, 78, -575), (17, 17, 330), pz=10),
        S("marrow", (0, 78, -575), (12, 12, 326), pz=10),
        *_shell("bone", "marrow", (78, 42, -790), radii=(42, 20, 58), thickness=5),
        *_shell("bone", "marrow", (-78, 42, -790), radii=(42, 20, 58), thickness=5),
        *_shell("bone", "marrow", (88, 8, -950), radii=(15, 15, 140), thickness=5, pz=10),
        *_shell("bone", "marrow", (-88, 8, -950), radii=(15, 15, 140), thickness=5, pz=10),
    ]
    shapes += _arm_shapes(body.arms_up)
    return shapes


def _bowel_shapes(seed: int) -> list[Shape]:
    """Loops of small and large bowel in the lower abdomen; their layout changes from scan to scan."""
    rng = np.random.default_rng(10_000 + seed)
    shapes = []
    for _ in range(7):
        center = (rng.uniform(-80, 80), rng.uniform(-60, -10), rng.uniform(-780, -680))
        radii = (rng.uniform(10, 16), rng.uniform(10, 16), rng.uniform(25, 45))
        shapes.append(Shape("bowel", center, radii))
    return shapes


def _arm_shapes(arms_up: bool) -> list[Shape]:
    """Arms at the sides of the trunk or raised beside the head (changes between scans)."""
    shapes = []
    for side in (1, -1):
        if arms_up:
            c, r = (side * 122, 10, -60), (38, 40, 260)
        else:
            c, r = (side * 212, 10, -585), (38, 40, 300)
        shapes += [Shape("fat", c, r, pz=8), Shape("muscle", c, (r[0] - 8, r[1] - 8, r[2]), pz=8)]
        shapes += _shell("bone", "marrow", c, radii=(11, 11, r[2] * 0.55), thickness=4, pz=10)
    return shapes


#: Where lesions grow: a site name → (tissue painted under it, candidate shapes in the reference frame).
LESION_SITES: dict[str, list[Shape]] = {
    "liver": [Shape("liver", (-68, 2, -565), (80, 64, 56))],
    "lymph node": [
        Shape("fat", (30, 20, -700), (12, 10, 60)),  # para-aortic
        Shape("fat", (-5, 20, -700), (10, 10, 60)),
        Shape("fat", (10, -10, -420), (25, 20, 25)),  # mediastinal
        Shape("fat", (55, 0, -270), (12, 12, 10)),  # supraclavicular
        Shape("fat", (-58, 0, -272), (12, 12, 10)),
        Shape("fat", (62, 10, -815), (12, 12, 20)),  # iliac
        Shape("fat", (-62, 10, -815), (12, 12, 20)),
    ],
    "bone": [
        Shape("marrow", (0, 78, -575), (6, 6, 300)),
        Shape("marrow", (78, 42, -790), (25, 8, 40)),
        Shape("marrow", (-78, 42, -790), (25, 8, 40)),
        Shape("marrow", (88, 8, -880), (5, 5, 60)),
    ],
    "pancreas": [Shape("pancreas", (16, 8, -612), (45, 5, 5))],
    "mesentery": [Shape("fat", (0, -30, -690), (55, 20, 40))],
}

#: Lesion diameters (mm) by site: (min, max) at baseline.
SITE_DIAMETER_MM = {"liver": (6, 40), "lymph node": (5, 25), "bone": (5, 22), "pancreas": (8, 28),
                    "mesentery": (8, 32)}
#: Lesion CT numbers by site (liver metastases are hypodense, bone metastases sclerotic).
SITE_HU = {"liver": 45.0, "lymph node": 40.0, "bone": 550.0, "pancreas": 45.0, "mesentery": 40.0}
