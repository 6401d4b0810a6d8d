"""The site of each lesion-ROI - liver, bone, lymph node, pancreas, lung or peritoneum/other - from the organs
found on PET/CT (``segmentation.organs``) and the ROI's position, by the first rule that holds:

1. **bone**: at least half of the ROI lies in the skeleton (bone ≥ 200 HU with its marrow cavities).
2. **liver** when the ROI is enclosed by liver: at least :data:`LIVER_ENCLOSED_SHARE` of its surroundings (the
   shell :data:`SHELL_MM` around it) is liver. At an organ's surface at most about half of a lesion's surroundings
   lie in that organ (the half-space behind a flat surface), so a share well above it means inside. Checked
   before the pancreas, whose bed borders the liver (a lesion in the liver's posterior-inferior part lies there).
   Not by the share of the ROI in the liver: the liver found by uptake can take in the pancreas next to it, which
   has a like uptake on SSTR PET.
3. **pancreas**: the ROI's centre lies in the pancreatic bed. The pancreas is not segmented (no pancreas model
   is shipped); it lies in front of the aorta, the inferior vena cava and the left renal vein, at the level of
   the upper halves of the kidneys (L1-L2), from the duodenum to the splenic hilum (Gray's Anatomy). So: between
   the kidneys' mid-height and :data:`PANCREAS_LEVEL` above it (in half kidney lengths), in the posterior
   :data:`PANCREAS_DEPTH` of the distance from the vertebral body's front to the anterior skin, and between the
   right kidney's centre and the left kidney's outer edge. Checked before a lesion at the liver's surface: the
   pancreatic head touches the liver. A node in front of the aorta at that level (peripancreatic, portocaval) is
   called pancreas too.
   Then **liver** when at least half of the ROI lies in the liver (its holes, which lesions make, filled), or at
   least :data:`LIVER_SURROUNDING_SHARE` of its surroundings is liver: a lesion bulging out of the liver's
   surface is still partly wrapped in it, a neighbouring node or organ is not.
4. **lung**: at least half of its surroundings is aerated lung (≤ -500 HU; lung parenchyma is -950 to -600).
5. **lymph node** when the ROI's centre lies above the liver's top (the diaphragm: mediastinum, hila, neck,
   axillae), or without a liver found, above the lungs' lowest point.
6. **peritoneum/other** in the abdomen and pelvis when the ROI lies in the peritoneal cavity: further forward than
   :data:`PERITONEAL_DEPTH` of the way from the vertebral body's front to the anterior skin, and at least
   :data:`PELVIC_SIDEWALL_MM` from any bone; or when it lies mostly in the spleen or a kidney. Retroperitoneal
   nodes lie along the aorta, the vena cava and the iliac vessels, on the vertebral bodies and the pelvic sidewalls,
   behind the peritoneum; mesenteric and peritoneal deposits lie in front of them.
7. **lymph node** otherwise (retroperitoneum, pelvic sidewall).

A ROI on a time point without CT (or when the organs could not be found) gets no site (""); the reader sets sites
in the review (``ReviewSession.set_site``). The thresholds are anatomical proportions, measured on the phantom's
development patients (``benchmarks/bench_burden.py``), not on patient scans.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from LesionResponseLib.segmentation.organs import ORGAN_CODES, Organs, axis_mm, in_plane

#: Share of the ROI (or of its surroundings) that decides "in" an organ.
MAJORITY = 0.5
#: Surroundings of a ROI: voxels between these distances (mm) from it (beyond the first voxel, where its own
#: spill-out sits, and within two PET voxels more).
SHELL_MM = (4.0, 12.0)
#: Share of the surroundings in the liver that makes a surface lesion a liver lesion; 0 for nodes beside it on the
#: phantom's development patients, 0.37-1.0 for liver lesions (a bulging surface lesion).
LIVER_SURROUNDING_SHARE = 0.3
#: Share of the surroundings in the liver that makes a ROI enclosed by the liver (above the ~0.5 a surface gives).
LIVER_ENCLOSED_SHARE = 0.8
#: Pancreatic bed, levels: from the kidneys' mid-height up to this many half kidney lengths above it (the upper
#: poles are at 1.0; the pancreas lies below them with its tail rising toward the splenic hilum).
PANCREAS_LEVEL = (0.4, 1.1)
#: Pancreatic bed, depth: the share (from, to) of the distance from the vertebral body's front to the anterior
#: skin, at the ROI's level (the pancreas lies just in front of the great vessels on the vertebra).
PANCREAS_DEPTH = (0.15, 0.42)
#: A ROI further forward than this share of the way from the vertebral body's front to the anterior skin lies in
#: front of the retroperitoneum (the aorta and cava, ~2.5 cm across, with their nodes lie on the vertebra).
PERITONEAL_DEPTH = 0.40
#: Pelvic sidewall nodes (iliac, obturator) lie within this distance (mm) of the pelvic bones.
PELVIC_SIDEWALL_MM = 30.0
#: Half-width (mm) of the strip about the midline where the vertebral body and the anterior skin are looked for.
MIDLINE_STRIP_MM = 20.0


def lesion_sites(labels: sitk.Image, organs: Organs, only: list[int] | None = None) -> dict[int, str]:
    """Site (module docstring) of every label of ``labels`` (PET grid, the organs' grid), or of those in ``only``."""
    lab = sitk.GetArrayViewFromImage(labels)
    found = [int(v) for v in np.unique(lab) if v > 0 and (only is None or int(v) in only)]
    if not found:
        return {}
    frame = _Frame(organs)
    boxes = ndimage.find_objects(lab)
    return {label: frame.site(lab, label, boxes[label - 1]) for label in found}


class _Frame:
    """What the rules need from the organs of one time point, computed once."""

    def __init__(self, organs: Organs) -> None:
        self.organs = organs
        grid = organs.grid
        self.spacing = tuple(float(s) for s in grid.GetSpacing()[::-1])
        self.x, self.y, self.z = (axis_mm(grid, axis) for axis in range(3))
        self.midline = organs.midline_x_mm()
        liver = organs.mask("liver")
        self.liver = liver
        self.liver_filled = ndimage.binary_fill_holes(liver) | ndimage.binary_fill_holes(liver, in_plane())
        self.lung = organs.mask("lung")
        self.skeleton = organs.mask("skeleton")
        self.diaphragm = self._top_of(liver) if liver.any() else self._bottom_of(self.lung)
        self.kidneys = self._kidneys(organs.mask("kidney"))
        self.spine_front, self.skin_front = self._anterior_references()

    # ----- frame ---------------------------------------------------------------------------------------
    def _top_of(self, mask: np.ndarray) -> float | None:
        rows = mask.any(axis=(1, 2))
        return float(self.z[rows].max()) if rows.any() else None

    def _bottom_of(self, mask: np.ndarray) -> float | None:
        rows = mask.any(axis=(1, 2))
        return float(self.z[rows].min()) if rows.any() else None

    def _kidneys(self, kidneys: np.ndarray) -> dict[str, float] | None:
        """Mid-height and half-length (z, mm) of the kidneys, the right one's centre x, the left one's outer x."""
        if not kidneys.any():
            return None
        zs = self.z[kidneys.any(axis=(1, 2))]
        columns = kidneys.any(axis=(0, 1))
        right = columns & (self.x < self.midline)
        left = columns & (self.x > self.midline)
        if not right.any() or not left.any():
            return None
        weights = kidneys.sum(axis=(0, 1))
        return {"mid": float((zs.max() + zs.min()) / 2), "half": float(max((zs.max() - zs.min()) / 2, 1.0)),
                "right_x": float(np.average(self.x[right], weights=weights[right])),
                "left_outer_x": float(self.x[left].max())}

    def _anterior_references(self) -> tuple[np.ndarray, np.ndarray]:
        """Per axial slice: y (mm) of the vertebral body's front and of the anterior skin at the midline (NaN where
        not found; the vertebral front is interpolated between slices that have it)."""
        strip = np.abs(self.x - self.midline) <= MIDLINE_STRIP_MM
        body = self.organs.mask("body")[:, :, strip].any(axis=2)  # (z, y)
        bone = self.skeleton[:, :, strip].any(axis=2)
        n = body.shape[0]
        skin = np.full(n, np.nan)
        spine = np.full(n, np.nan)
        for k in range(n):
            ys = self.y[body[k]]
            if ys.size == 0:
                continue
            skin[k] = ys.min()
            back = self.y[bone[k] & (self.y > (ys.min() + ys.max()) / 2)]  # bone in the posterior half
            if back.size:
                spine[k] = back.min()
        known = np.flatnonzero(~np.isnan(spine))
        if known.size:
            spine = np.interp(np.arange(n), known, spine[known])
        return spine, skin

    def near_bone(self, lab: np.ndarray, label: int, box: tuple[slice, ...]) -> bool:
        """Whether bone lies within :data:`PELVIC_SIDEWALL_MM` of the ROI (worked out on the ROI's box grown by
        that distance)."""
        pad = [int(np.ceil(PELVIC_SIDEWALL_MM / s)) + 1 for s in self.spacing]
        crop = tuple(slice(max(0, b.start - p), b.stop + p) for b, p in zip(box, pad, strict=True))
        bone = self.skeleton[crop]
        if not bone.any():
            return False
        distance = ndimage.distance_transform_edt(lab[crop] != label, sampling=self.spacing)
        return bool((distance[bone] < PELVIC_SIDEWALL_MM).any())

    # ----- rules ---------------------------------------------------------------------------------------
    def site(self, lab: np.ndarray, label: int, box: tuple[slice, ...]) -> str:
        pad = [int(np.ceil(SHELL_MM[1] / s)) + 1 for s in self.spacing]
        crop = tuple(slice(max(0, b.start - p), b.stop + p) for b, p in zip(box, pad, strict=True))
        roi = lab[crop] == label
        if self.skeleton[crop][roi].mean() >= MAJORITY:
            return "bone"
        zi, yi, xi = (np.nonzero(roi)[axis] + crop[axis].start for axis in range(3))
        centre = (float(self.x[xi].mean()), float(self.y[yi].mean()), float(self.z[zi].mean()))
        k = int(round(zi.mean()))
        depth = self._depth(centre[1], k)
        outside = ndimage.distance_transform_edt(~roi, sampling=self.spacing)
        shell = (outside > SHELL_MM[0]) & (outside <= SHELL_MM[1])
        liver_around = self.liver[crop][shell].mean()
        if liver_around >= LIVER_ENCLOSED_SHARE:
            return "liver"
        if self._in_pancreatic_bed(centre, depth):
            return "pancreas"
        if self.liver_filled[crop][roi].mean() >= MAJORITY or liver_around >= LIVER_SURROUNDING_SHARE:
            return "liver"
        if self.lung[crop][shell].mean() >= MAJORITY:
            return "lung"
        if self.diaphragm is not None and centre[2] > self.diaphragm:
            return "lymph node"
        in_organ = np.isin(self.organs.labels[crop][roi], [ORGAN_CODES["spleen"], ORGAN_CODES["kidney"]]).mean()
        peritoneal = depth is not None and depth > PERITONEAL_DEPTH and not self.near_bone(lab, label, box)
        return "peritoneum/other" if peritoneal or in_organ >= MAJORITY else "lymph node"

    def _depth(self, y: float, k: int) -> float | None:
        """How far forward (0 at the vertebral body's front, 1 at the anterior skin) a point at ``y`` lies."""
        spine, skin = self.spine_front[k], self.skin_front[k]
        if np.isnan(spine) or np.isnan(skin) or spine - skin <= 0:
            return None
        return float((spine - y) / (spine - skin))

    def _in_pancreatic_bed(self, centre: tuple[float, float, float], depth: float | None) -> bool:
        if self.kidneys is None or depth is None:
            return False
        level = (centre[2] - self.kidneys["mid"]) / self.kidneys["half"]
        return (PANCREAS_LEVEL[0] <= level <= PANCREAS_LEVEL[1] and PANCREAS_DEPTH[0] <= depth <= PANCREAS_DEPTH[1]
                and self.kidneys["right_x"] <= centre[0] <= self.kidneys["left_outer_x"])
