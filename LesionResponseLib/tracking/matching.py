"""Match lesion-ROIs between time points into links (Santoro-Fernandes et al., PMB 2021; docs/DOMAIN.md §2).

For every follow-up ``j`` (in time order) and every earlier time point ``i`` (most recent first):

1. **Conformal dilation.** Each time point's accepted ROIs grow by ``params.matching.dilation_mm`` in physical
   units (anisotropic voxels respected), each voxel going to its geodesically nearest ROI so neighbours
   never merge.
2. **Mapping.** Dilated labels of both time points are brought onto one *frame* grid by nearest-neighbour
   resampling through the registration (ITK convention: a transform of ``(k, j)`` maps points of
   time point ``k`` to points of ``j``). Frame choice, by preference: ``i`` itself when ``(i, j)`` is given;
   else the latest ``k < i`` with both ``(k, i)`` and ``(k, j)`` given (normally the baseline); else ``i``
   with a composition of given forward transforms ``i -> ... -> j`` (e.g. consecutive pairs). No transform
   is ever inverted.
3. **Clustering by overlap.** A candidate pair ``(a, b)`` needs an overlap coefficient
   ``|Da ∩ Db| / min(|Da|, |Db|) >= params.matching.min_overlap`` and a centroid distance in the frame
   ``<= params.matching.max_distance_mm``. Connected components of candidate pairs are the clusters.
4. **Linear assignment** (``scipy.optimize.linear_sum_assignment``) inside each cluster on
   ``cost = distance / max_match_distance_mm + (1 - overlap)`` gives one-to-one links. A ROI left over in
   a cluster whose dilated region lies mostly inside an assigned partner's
   (``|Da ∩ Db| / |D_leftover| >= params.matching.containment_min``) joins it: several ``j`` ROIs on one ``i``
   ROI are a **split**, several ``i`` ROIs on one ``j`` ROI a **merge**. Before that, an assigned ROI that
   lies more inside another assigned partner than inside its own becomes that partner's branch
   (:func:`_branches_of_assigned`): a split piece next to a vanished neighbour is not handed to the
   neighbour, and a lesion held mostly by its own partner (a stable neighbour) is never captured.
5. **Own partners.** An assigned pair is one lesion seen at both time points, never to be taken apart by a
   split or merge, when its two ROIs lie within the distance one lesion can move between two scans or are each
   other's nearest ROI in the cluster. That distance comes from the geometry: ``REGISTRATION_TAIL`` × the
   registration error at lesion centres (``params.matching.registration_error_mm``; × √2 when both time points
   are mapped onto the frame, each with its own error) plus the change of the two ROIs' equivalent-sphere radii (a
   lesion growing or shrinking on one side moves its centroid by that much). And a ROI moves to another partner
   only if its centroid also lies nearer to that partner's sphere than to its own partner's. So a lesion that has
   its own partner at the adjacent time point is never absorbed by a neighbour's split (issue 32: a small stable
   lesion whose registered position fell partly into a split piece's dilated region was made that piece's branch
   at every time point).

**Skipped time points.** A ROI of ``j`` linked at a more recent time point is not offered to older ones,
and a ROI of ``i`` is offered to ``j`` only when its track (the links so far) has no ROI strictly between
``i`` and ``j``. So a lesion that disappears and returns is linked to its last appearance, and a ROI that
found its partner at ``j - 1`` never also links to an older ROI of a different track.

Parameters (``AnalysisParameters.matching``, LesionResponseLib/config.py, where each default is justified): ``dilation_mm`` (8 mm recommended: on 4 mm PET grids a 5 mm ball is
only the 6-neighbourhood, and 1-voxel lesions shifted by one diagonal voxel no longer overlap; measured in
``benchmarks/bench_tracking.py``), ``max_distance_mm`` (30 mm: centroid shifts of big responding or
splitting lesions stay below it; registration error is ~2-3 mm) and ``min_overlap`` (0.05: any real
contact of the dilated ROIs; the distance term of the cost separates neighbours) and ``containment_min`` (default 0.25: the phantom's split halves, pushed
apart by 14 mm, keep ~1/3 of their dilated volume inside the parent's; a small new lesion only touching
a big one stays below it) and ``registration_error_mm`` (2.5 mm: docs/DOMAIN.md §2's 2.3-2.6 mm at lesion centres).
Only ``status == "accepted"`` ROIs take part.
"""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cc3d
import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.datamodel import LesionROI, Link, roi_id_for
from LesionResponseLib.errors import describe
from LesionResponseLib.imaging import ball
from LesionResponseLib.tracking.tracks import TrackingError

Transforms = dict[tuple[int, int], sitk.Transform]
#: Registration errors at lesion centres reach ~3x their mean (the prior-guided search's margin assumes the same
#: tail, config.PriorSearchConfig.margin_mm): two ROIs this many mean errors apart can still be one lesion.
REGISTRATION_TAIL = 3.0


# ---------------------------------------------------------------------------------------------- dilation
def dilate_labels(labels: np.ndarray, spacing_zyx: tuple[float, float, float], radius_mm: float,
                  in_place: bool = False) -> np.ndarray:
    """Grow every label by ``radius_mm`` (mm, Euclidean between voxel centres) without merging neighbours.

    ``labels`` is a z, y, x array. A background voxel within ``radius_mm`` of some ROI takes the label of
    the nearest ROI voxel (Euclidean, anisotropic spacing respected). The distance transform runs only
    on the bounding box of each connected group of dilated ROIs, so cost follows the lesion load, not
    the image size.
    """
    out = labels if in_place else labels.copy()
    if radius_mm <= 0 or not labels.any():
        return out
    inside = ndimage.binary_dilation(labels > 0, structure=ball(spacing_zyx, radius_mm))
    groups = cc3d.connected_components(inside, connectivity=6)  # = ndimage.label's default, ~5x faster
    for index, box in enumerate(ndimage.find_objects(groups), start=1):
        sub = out[box]  # a view: filled in place
        mine = groups[box] == index
        sources = mine & (sub > 0)  # this group's ROI voxels (other groups' fills carry another index)
        fill = mine & (sub == 0)
        values = sub[sources]
        if values.min() == values.max():  # one ROI in the group (the usual case): no distance transform needed
            sub[fill] = values[0]
            continue
        _, nearest = ndimage.distance_transform_edt(~sources, sampling=spacing_zyx, return_indices=True)
        sub[fill] = sub[tuple(nearest)][fill]
    return out



# ---------------------------------------------------------------------------------------------- routing
def _chain(transforms: Transforms, start: int, stop: int) -> sitk.Transform | None:
    """Composition of given forward transforms from ``start`` to ``stop`` (fewest hops), or None."""
    if (start, stop) in transforms:
        return transforms[(start, stop)]
    paths: dict[int, list[tuple[int, int]]] = {start: []}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for a, b in sorted(transforms):
                if a == node and b <= stop and b not in paths:
                    paths[b] = paths[node] + [(a, b)]
                    nxt.append(b)
        frontier = nxt
    if stop not in paths:
        return None
    # ITK composite transforms apply the last-added transform first
    return sitk.CompositeTransform([transforms[edge] for edge in reversed(paths[stop])])


def route(transforms: Transforms, i: int, j: int) -> tuple[int, sitk.Transform | None, sitk.Transform]:
    """Frame ``k`` for comparing time points ``i < j``, with ``T(k, i)`` (None when k == i) and ``T(k, j)``."""
    if (i, j) in transforms:
        return i, None, transforms[(i, j)]
    for k in range(i - 1, -1, -1):
        if (k, i) in transforms and (k, j) in transforms:
            return k, transforms[(k, i)], transforms[(k, j)]
    chained = _chain(transforms, i, j)
    if chained is not None:
        return i, None, chained
    raise TrackingError(describe(
        f"no registration maps time point {i} to time point {j} (given: {sorted(transforms)})",
        path="transforms",
        fix=f"Register time point {j} to the baseline (pair (0, {j})) or give consecutive pairs",
    ))


# ---------------------------------------------------------------------------------------------- frames
@dataclass
class _FrameLabels:
    """Dilated labels of one time point on a frame grid, with per-label voxel counts and centroids (mm)."""

    array: np.ndarray
    counts: np.ndarray
    centroids: np.ndarray  # (max_label + 1, 3), LPS mm


class _Frames:
    """Cache of dilated label maps resampled onto frame grids."""

    def __init__(self, dilated: dict[int, tuple[sitk.Image, np.ndarray]]) -> None:
        self.dilated = dilated  # time point -> (dilated label image, its array)
        self.cache: dict[tuple[int, int], _FrameLabels] = {}

    def get(self, frame: int, tp: int, transform: sitk.Transform | None) -> _FrameLabels:
        key = (frame, tp)
        if key not in self.cache:
            reference = self.dilated[frame][0]
            image, array = self.dilated[tp]
            if transform is not None and not _is_identity_on(transform, image, reference):
                array = sitk.GetArrayFromImage(sitk.Resample(image, reference, transform,
                                                             sitk.sitkNearestNeighbor, 0))
            self.cache[key] = _stats(array, reference)
        return self.cache[key]


def _is_identity_on(transform: sitk.Transform, image: sitk.Image, reference: sitk.Image) -> bool:
    same_grid = (image.GetSize() == reference.GetSize() and np.allclose(image.GetOrigin(), reference.GetOrigin())
                 and np.allclose(image.GetSpacing(), reference.GetSpacing())
                 and np.allclose(image.GetDirection(), reference.GetDirection()))
    return same_grid and transform.GetTransformEnum() == sitk.sitkIdentity


def _stats(array: np.ndarray, grid: sitk.Image) -> _FrameLabels:
    zyx = np.nonzero(array)
    values = array[zyx].astype(np.int64)
    size = int(array.max(initial=0)) + 1
    counts = np.bincount(values, minlength=size)
    idx_xyz = np.stack([zyx[2], zyx[1], zyx[0]], axis=1).astype(float)
    direction = np.asarray(grid.GetDirection()).reshape(3, 3)
    points = (idx_xyz * np.asarray(grid.GetSpacing())) @ direction.T + np.asarray(grid.GetOrigin())
    sums = np.stack([np.bincount(values, weights=points[:, d], minlength=size) for d in range(3)], axis=1)
    centroids = sums / np.maximum(counts, 1)[:, None]
    return _FrameLabels(array, counts, centroids)


# ---------------------------------------------------------------------------------------------- state
class _TrackState:
    """Union-find over ROI ids that also knows, per component, the time points it occupies."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.tps: dict[str, set[int]] = {}

    def add(self, roi_id: str, tp: int) -> None:
        self.parent[roi_id] = roi_id
        self.tps[roi_id] = {tp}

    def find(self, roi_id: str) -> str:
        while self.parent[roi_id] != roi_id:
            self.parent[roi_id] = self.parent[self.parent[roi_id]]
            roi_id = self.parent[roi_id]
        return roi_id

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.tps[ra] |= self.tps.pop(rb)

    def present_between(self, roi_id: str, i: int, j: int) -> bool:
        return any(i < tp < j for tp in self.tps[self.find(roi_id)])


# ---------------------------------------------------------------------------------------------- matching
def match_rois(
    labels: dict[int, sitk.Image],
    rois: list[LesionROI],
    transforms: Transforms,
    params: AnalysisParameters,
) -> list[Link]:
    """Links between accepted ROIs of different time points (see the module docstring for the method).

    ``labels[k]`` is time point k's label map (values = ``LesionROI.label``); ``transforms[(i, j)]`` maps
    points of time point i to time point j (i < j): give ``(0, j)`` for every follow-up, and optionally
    consecutive pairs. Returns links sorted by (time point of roi_b, roi_a, roi_b).
    """
    containment_min = params.matching.containment_min
    accepted = _accepted_by_tp(rois, labels)
    tps = sorted(accepted)
    # time points dilate independently; scipy's morphology releases the GIL, so threads use every core
    with ThreadPoolExecutor(max_workers=max(1, min(len(tps), os.cpu_count() or 1))) as pool:
        dilated = pool.map(lambda tp: _dilated(labels[tp], accepted[tp], params.matching.dilation_mm), tps)
        frames = _Frames(dict(zip(tps, dilated, strict=True)))
    radius = {(roi.timepoint, roi.label): equivalent_radius_mm(roi.volume_ml) for roi in rois}
    state = _TrackState()
    label_of: dict[str, int] = {}
    for tp in tps:
        for label in accepted[tp]:
            state.add(roi_id_for(tp, label), tp)
            label_of[roi_id_for(tp, label)] = label
    links: list[Link] = []
    for jpos, j in enumerate(tps):
        linked_b: set[int] = set()
        for i in reversed(tps[:jpos]):
            frame, t_ki, t_kj = route(transforms, i, j)
            la = frames.get(frame, i, t_ki)
            lb = frames.get(frame, j, t_kj)
            a_ok = {a for a in accepted[i] if not state.present_between(roi_id_for(i, a), i, j)}
            b_ok = set(accepted[j]) - linked_b
            # each time point mapped onto the frame adds its own registration error (independent: in quadrature)
            error_mm = params.matching.registration_error_mm * (1.0 if t_ki is None else np.sqrt(2.0))
            geometry = _Geometry({a: radius[(i, a)] for a in a_ok}, {b: radius[(j, b)] for b in b_ok}, error_mm)
            for link in _match_pair(la, lb, i, j=j, a_ok=a_ok, b_ok=b_ok, params=params,
                                    containment_min=containment_min, geometry=geometry):
                links.append(link)
                state.union(link.roi_a, link.roi_b)
                linked_b.add(label_of[link.roi_b])
    return links


def equivalent_radius_mm(volume_ml: float) -> float:
    """Radius (mm) of the sphere of ``volume_ml`` (mL)."""
    return float((3.0 * max(volume_ml, 0.0) * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0))


@dataclass
class _Geometry:
    """What decides whether two ROIs of a pair of time points can be one lesion: their equivalent-sphere radii
    (mm, by label) and the registration error between the two scans in the frame (mm, mean)."""

    radius_a: dict[int, float]
    radius_b: dict[int, float]
    error_mm: float

    def same_lesion_mm(self, a: int, b: int) -> float:
        """How far (mm) the centroids of one lesion can lie apart in the frame: the registration error's tail plus
        the change of radius (a lesion growing or shrinking on one side moves its centroid by that much)."""
        return REGISTRATION_TAIL * self.error_mm + abs(self.radius_a.get(a, 0.0) - self.radius_b.get(b, 0.0))

    def beyond_mm(self, partner: int, distance_mm: float, partner_side: str) -> float:
        """How far (mm) a ROI's centroid at ``distance_mm`` from ``partner`` (a ROI of side ``"a"`` or ``"b"``) lies
        outside the partner's equivalent sphere (negative inside): a piece of a split lies in or next to the lesion
        it came from, so of two partners the one whose sphere it lies nearer to explains it better."""
        radii = self.radius_a if partner_side == "a" else self.radius_b
        return distance_mm - radii.get(partner, 0.0)


def _accepted_by_tp(rois: list[LesionROI], labels: dict[int, sitk.Image]) -> dict[int, set[int]]:
    accepted: dict[int, set[int]] = defaultdict(set)
    for roi in rois:
        if roi.status != "accepted":
            continue
        if roi.timepoint not in labels:
            raise TrackingError(describe(
                f"lesion-ROI {roi.roi_id} belongs to time point {roi.timepoint}, which has no label map",
                path="labels", fix="Pass the label map of every time point that has ROIs"))
        if roi.roi_id != roi_id_for(roi.timepoint, roi.label):
            raise TrackingError(describe(
                f"lesion-ROI id {roi.roi_id!r} does not match its time point and label "
                f"({roi_id_for(roi.timepoint, roi.label)!r})",
                path="rois", fix="Build ROI ids with datamodel.roi_id_for(timepoint, label)"))
        accepted[roi.timepoint].add(roi.label)
    return dict(accepted)


def _dilated(image: sitk.Image, keep: set[int], dilation_mm: float) -> tuple[sitk.Image, np.ndarray]:
    """Label map with only the ``keep`` labels, conformally dilated by ``dilation_mm`` (image and array)."""
    array = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        array = np.rint(array).astype(np.int64)  # label maps stored as float (some tools do) hold integers
    lookup = np.zeros(int(array.max(initial=0)) + 1, np.uint16 if array.max(initial=0) < 65536 else np.uint32)
    for label in keep:
        if label < lookup.size:
            lookup[label] = label
    dilated = dilate_labels(lookup[array], tuple(reversed(image.GetSpacing())), dilation_mm, in_place=True)
    out = sitk.GetImageFromArray(dilated)
    out.CopyInformation(image)
    return out, dilated


def _pair_table(la: _FrameLabels, lb: _FrameLabels, a_ok: set[int], b_ok: set[int]) -> np.ndarray:
    """Rows (a, b, intersection voxels) for every eligible pair of overlapping dilated ROIs."""
    both = (la.array > 0) & (lb.array > 0)
    a = la.array[both].astype(np.int64)
    b = lb.array[both].astype(np.int64)
    width = int(lb.counts.size)
    codes, inter = np.unique(a * width + b, return_counts=True)
    table = np.stack([codes // width, codes % width, inter], axis=1)
    keep = [r for r in range(len(table)) if table[r, 0] in a_ok and table[r, 1] in b_ok]
    return table[keep]


def _match_pair(la: _FrameLabels, lb: _FrameLabels, i: int, *, j: int, a_ok: set[int], b_ok: set[int],
                params: AnalysisParameters, containment_min: float, geometry: _Geometry) -> list[Link]:
    """Links of one time point pair: gate, cluster, assign, attach splits and merges."""
    if not a_ok or not b_ok:
        return []
    table = _pair_table(la, lb, a_ok, b_ok)
    cands: dict[tuple[int, int], tuple[float, float, float, int]] = {}
    for a, b, inter in table.tolist():
        overlap = inter / min(la.counts[a], lb.counts[b])
        distance = float(np.linalg.norm(la.centroids[a] - lb.centroids[b]))
        if overlap >= params.matching.min_overlap and distance <= params.matching.max_distance_mm:
            cost = distance / params.matching.max_distance_mm + (1.0 - overlap)
            cands[(a, b)] = (cost, overlap, distance, inter)
    pairs: list[tuple[int, int]] = []
    for cluster in _clusters(list(cands)):
        pairs.extend(_resolve_cluster(cluster, cands, la, lb, containment_min, geometry))
    per_a = defaultdict(int)
    per_b = defaultdict(int)
    for a, b in pairs:
        per_a[a] += 1
        per_b[b] += 1
    links = []
    for a, b in sorted(pairs):
        cost, overlap, distance, _ = cands[(a, b)]
        kind = "split" if per_a[a] > 1 else "merge" if per_b[b] > 1 else "one-to-one"
        links.append(Link(roi_a=roi_id_for(i, a), roi_b=roi_id_for(j, b), cost=round(float(cost), 4),
                          overlap=round(float(overlap), 4), distance_mm=round(float(distance), 2), kind=kind))
    return links


def _clusters(edges: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Connected components of the bipartite candidate graph, as lists of edges."""
    if not edges:
        return []
    a_index = {a: n for n, a in enumerate(sorted({a for a, _ in edges}))}
    b_index = {b: n + len(a_index) for n, b in enumerate(sorted({b for _, b in edges}))}
    rows = [a_index[a] for a, _ in edges]
    cols = [b_index[b] for _, b in edges]
    size = len(a_index) + len(b_index)
    graph = coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(size, size))
    _, comp = connected_components(graph, directed=False)
    groups: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for edge, row in zip(edges, rows, strict=True):
        groups[int(comp[row])].append(edge)
    return [sorted(group) for _, group in sorted(groups.items())]


def _mutual_nearest(cluster: list[tuple[int, int]], cands: dict) -> list[tuple[int, int]]:
    """Pairs of the cluster whose two ROIs are each other's nearest (centroid distance in the frame)."""
    nearest_b: dict[int, tuple[float, int]] = {}
    nearest_a: dict[int, tuple[float, int]] = {}
    for a, b in cluster:
        distance = cands[(a, b)][2]
        nearest_b[a] = min(nearest_b.get(a, (np.inf, -1)), (distance, b))
        nearest_a[b] = min(nearest_a.get(b, (np.inf, -1)), (distance, a))
    return sorted((a, b) for a, (_, b) in nearest_b.items() if nearest_a[b][1] == a)


def _own_partners(pairs: list[tuple[int, int]], cluster: list[tuple[int, int]], cands: dict,
                  geometry: _Geometry) -> set[tuple[int, int]]:
    """The assigned ``pairs`` that are one lesion seen at both time points: within the distance one lesion can move
    (:meth:`_Geometry.same_lesion_mm`), or each other's nearest ROI in the cluster (module docstring, step 5)."""
    mutual = set(_mutual_nearest(cluster, cands))
    return {(a, b) for a, b in pairs if (a, b) in mutual or cands[(a, b)][2] <= geometry.same_lesion_mm(a, b)}


def _resolve_cluster(cluster: list[tuple[int, int]], cands: dict, la: _FrameLabels, lb: _FrameLabels,
                     containment_min: float, geometry: _Geometry) -> list[tuple[int, int]]:
    """One-to-one pairs by linear assignment, re-examined for branches (own partners stay), then left-overs
    contained in a partner."""
    if len(cluster) == 1:
        return cluster
    a_ids = sorted({a for a, _ in cluster})
    b_ids = sorted({b for _, b in cluster})
    big = 1e6
    cost = np.full((len(a_ids), len(b_ids)), big)
    for a, b in cluster:
        cost[a_ids.index(a), b_ids.index(b)] = cands[(a, b)][0]
    rows, cols = linear_sum_assignment(cost)
    pairs = [(a_ids[r], b_ids[c]) for r, c in zip(rows, cols, strict=True) if cost[r, c] < big]
    own = _own_partners(pairs, cluster, cands, geometry)
    pairs, branches = _branches_of_assigned(pairs, cands, la, lb, containment_min, own, geometry)
    used_a = {a for a, _ in pairs}
    used_b = {b for _, b in pairs}
    taken_a = used_a | {a for a, _ in branches}
    taken_b = used_b | {b for _, b in branches}
    extra = []
    for b in b_ids:
        if b not in taken_b:
            best = _best_container([(a, cands[(a, b)][3]) for a in used_a if (a, b) in cands],
                                   lb.counts[b], containment_min)
            if best is not None:
                extra.append((best, b))
    for a in a_ids:
        if a not in taken_a:
            best = _best_container([(b, cands[(a, b)][3]) for b in used_b if (a, b) in cands],
                                   la.counts[a], containment_min)
            if best is not None:
                extra.append((a, best))
    return pairs + branches + extra


def _branches_of_assigned(pairs: list[tuple[int, int]], cands: dict, la: _FrameLabels, lb: _FrameLabels,
                          containment_min: float, own: set[tuple[int, int]], geometry: _Geometry,
                          ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Assigned pairs whose ROI lies more inside another assigned partner become that partner's branch.

    One-to-one assignment maximises the number of pairs, so when a lesion next to a splitting one is gone
    (or missed) at ``j``, the split piece near it is handed to it. A ROI is explained by the partner whose
    dilated region holds most of it: an assigned ``b`` that has at least ``containment_min`` of its dilated
    volume inside another assigned ``a′`` and more of it there than inside its own partner ``a`` becomes a
    split branch of ``a′`` (``a`` is left unmatched: disappearing, or found again by the prior-guided
    search); symmetrically an ``a`` lying more inside another assigned ``b′`` merges into it. A ROI whose
    own partner holds most of it (a stable neighbour) is never moved, so a branch never captures a lesion
    that has its own one-to-one partner; nor does a ROI move to a partner whose sphere its centroid lies farther
    outside than its own partner's, and an ``own`` pair (:func:`_own_partners`) never moves: a small neighbour whose
    dilated region the registration pushed into a big piece's stays with its own lesion.
    """
    movable = [pair for pair in pairs if pair not in own]
    branches = _held_more_elsewhere(pairs, cands, lb.counts, containment_min, geometry, flip=False, movable=movable)
    moved_b = {b for _, b in branches}
    kept = [(a, b) for a, b in pairs if b not in moved_b]
    merged = [(a, b) for b, a in _held_more_elsewhere(kept, cands, la.counts, containment_min, geometry, flip=True,
                                                      movable=[pair for pair in kept if pair not in own])]
    moved_a = {a for a, _ in merged}
    kept = [(a, b) for a, b in kept if a not in moved_a]
    # a branch needs its container to stay a one-to-one partner
    valid_a, valid_b = {a for a, _ in kept}, {b for _, b in kept}
    branches = [(a, b) for a, b in branches if a in valid_a] + [(a, b) for a, b in merged if b in valid_b]
    return kept, branches


def _held_more_elsewhere(pairs: list[tuple[int, int]], cands: dict, counts: np.ndarray, containment_min: float,
                         geometry: _Geometry, flip: bool, movable: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(other partner, ROI) for each ``movable`` assigned ROI (``b`` of each pair; ``a`` when ``flip``) lying more
    inside another assigned partner of ``pairs`` than inside its own, by at least ``containment_min`` of its
    dilated volume, and nearer to that partner's sphere than to its own partner's (:meth:`_Geometry.beyond_mm`)."""
    def key(partner: int, roi: int) -> tuple[int, int]:
        return (roi, partner) if flip else (partner, roi)

    def oriented(items: list[tuple[int, int]]) -> list[tuple[int, int]]:  # (partner, roi)
        return [(b, a) if flip else (a, b) for a, b in items]

    def beyond(partner: int, roi: int) -> float:
        return geometry.beyond_mm(partner, cands[key(partner, roi)][2], "b" if flip else "a")

    partners = [partner for partner, _ in oriented(pairs)]
    moves = []
    for partner, roi in sorted(oriented(movable)):
        others = [(o, cands[key(o, roi)][3]) for o in partners if o != partner and key(o, roi) in cands]
        best = max(others, key=lambda item: (item[1], -item[0]), default=None)
        if (best and best[1] >= containment_min * counts[roi] and best[1] > cands[key(partner, roi)][3]
                and beyond(best[0], roi) < beyond(partner, roi)):
            moves.append((best[0], roi))
    return moves


def _best_container(options: list[tuple[int, int]], own_count: int, containment_min: float) -> int | None:
    """The partner covering the largest part of a left-over ROI, if it covers at least ``containment_min``."""
    if not options:
        return None
    partner, inter = max(options, key=lambda item: (item[1], -item[0]))
    return partner if inter / own_count >= containment_min else None
