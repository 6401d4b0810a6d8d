"""Tracks: the connected components of the links over the accepted lesion-ROIs, with stable ids.

A track is the path one lesion follows across all time points (docs/DOMAIN.md §1). Two ROIs belong to the same
track when a chain of links joins them; a ROI without a link is a track of its own. Ids are stable across
re-runs and reader edits: given the ``previous`` tracks, each new component keeps the id of the previous
track it shares most ROIs with.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from LesionResponseLib.datamodel import LesionROI, Link, Track
from LesionResponseLib.errors import LesionResponseError, describe


class TrackingError(LesionResponseError):
    """Inconsistent input to the tracking stage (unknown ROI ids, missing transforms, bad parameters)."""


class _DisjointSet:
    """Union-find over string keys (path halving, union by size)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.parent = {k: k for k in keys}
        self.size = dict.fromkeys(self.parent, 1)

    def find(self, key: str) -> str:
        parent = self.parent
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]


def _components(accepted: dict[str, LesionROI], links: Iterable[Link],
                timepoint_of: dict[str, int] | None = None) -> list[list[str]]:
    """Connected components of ``links`` over ``accepted`` ROI ids, each sorted by (time point, label).

    A link touching a ROI that exists but is not accepted joins nothing by itself, but a rejected ROI still
    bridges its accepted neighbours at *different* time points (``timepoint_of`` gives every ROI's time point;
    see :func:`_bridges`), so rejecting the middle ROI of a track leaves a gap, not two lesions.
    """
    links = list(links)
    sets = _DisjointSet(accepted)
    for link in links:
        if link.roi_a in accepted and link.roi_b in accepted:
            sets.union(link.roi_a, link.roi_b)
    for first, *others in _bridges(accepted, links, timepoint_of or {}):
        for other in others:
            sets.union(first, other)
    groups: dict[str, list[str]] = defaultdict(list)
    for roi_id in accepted:
        groups[sets.find(roi_id)].append(roi_id)

    def order(roi_id: str) -> tuple[int, int, str]:
        roi = accepted[roi_id]
        return roi.timepoint, roi.label, roi_id

    comps = [sorted(members, key=order) for members in groups.values()]
    comps.sort(key=lambda members: order(members[0]))
    return comps


def _bridges(accepted: dict[str, LesionROI], links: list[Link], timepoint_of: dict[str, int]) -> list[list[str]]:
    """Groups of accepted ROIs joined through rejected ROIs only, each spanning two or more time points.

    Rejecting a ROI says "this is not a lesion", not "the ROIs before and after it are different lesions":
    a reader separates lesions with unlink or split. So each group of linked rejected ROIs connects the
    accepted ROIs it touches, unless they all lie at one time point (two lesions whose only common ROI was not a
    lesion stay two lesions, as :class:`review.edits.UnlinkRoi` keeps them).
    """
    rejected = {r for link in links for r in (link.roi_a, link.roi_b) if r not in accepted and r in timepoint_of}
    if not rejected:
        return []
    groups = _DisjointSet(rejected)
    for link in links:
        if link.roi_a in rejected and link.roi_b in rejected:
            groups.union(link.roi_a, link.roi_b)
    touching: dict[str, set[str]] = defaultdict(set)
    for link in links:
        for inner, outer in ((link.roi_a, link.roi_b), (link.roi_b, link.roi_a)):
            if inner in rejected and outer in accepted:
                touching[groups.find(inner)].add(outer)
    return [sorted(members) for members in touching.values() if len({timepoint_of[r] for r in members}) > 1]


def _check_links(rois: list[LesionROI], links: Iterable[Link]) -> None:
    known = {roi.roi_id for roi in rois}
    for link in links:
        for roi_id in (link.roi_a, link.roi_b):
            if roi_id not in known:
                raise TrackingError(describe(
                    f"link {link.roi_a} -> {link.roi_b} names lesion-ROI {roi_id!r}, which is not in the ROI list",
                    path="analysis links",
                    fix="Remove the link or restore the ROI (a rejected ROI must stay in the list as 'rejected')",
                ))


def _assign_ids(comps: list[list[str]], previous: list[Track] | None, min_new_id: int) -> list[int]:
    """Track id of each component: inherited from ``previous`` where possible, else a fresh one.

    Pairs (component, previous track) sharing at least one ROI are granted greedily by decreasing number
    of shared ROIs, ties broken by the lower previous id, then the earlier component; each previous id and
    each component is used once. Fresh ids count up from ``max(previous ids, min_new_id - 1) + 1``.
    """
    ids: list[int | None] = [None] * len(comps)
    prev = previous or []
    owner = {roi_id: t.track_id for t in prev for members in t.rois.values() for roi_id in members}
    pairs: list[tuple[int, int, int]] = []  # (-shared, previous id, component index)
    for index, members in enumerate(comps):
        shared: dict[int, int] = defaultdict(int)
        for roi_id in members:
            if roi_id in owner:
                shared[owner[roi_id]] += 1
        pairs.extend((-count, track_id, index) for track_id, count in shared.items())
    taken: set[int] = set()
    for _neg, track_id, index in sorted(pairs):
        if ids[index] is None and track_id not in taken:
            ids[index] = track_id
            taken.add(track_id)
    next_id = max([t.track_id for t in prev] + [min_new_id - 1]) + 1
    result = []
    for track_id in ids:
        if track_id is None:
            track_id, next_id = next_id, next_id + 1
        result.append(track_id)
    return result


def build_tracks(
    rois: list[LesionROI],
    links: list[Link],
    previous: list[Track] | None = None,
    *,
    min_new_id: int = 1,
) -> list[Track]:
    """Tracks over the accepted ROIs: connected components of ``links``, sorted by track id.

    Every accepted ROI belongs to exactly one track; an unlinked one is a track of its own. Rejected ROIs
    are in no track, but still bridge their accepted neighbours at different time points (a gap where the
    rejected ROI was; :func:`_bridges`). ``Track.rois`` lists only the time points where the track has
    ROIs (ids sorted by label). Without ``previous``, ids are 1..N (or from ``min_new_id``) in order of
    each track's first (time point, label). With ``previous``, a component keeps the id of the previous
    track it shares most ROIs with (see :func:`_assign_ids`); others get ids above every previous id and
    above ``min_new_id - 1`` (pass the highest id ever used + 1 so deleted ids are never reused).

    Raises :class:`TrackingError` when a link names a ROI id absent from ``rois``.
    """
    _check_links(rois, links)
    accepted = {roi.roi_id: roi for roi in rois if roi.status == "accepted"}
    comps = _components(accepted, links, {roi.roi_id: roi.timepoint for roi in rois})
    ids = _assign_ids(comps, previous, min_new_id)
    tracks = []
    for track_id, members in zip(ids, comps, strict=True):
        per_tp: dict[int, list[str]] = defaultdict(list)
        for roi_id in members:
            per_tp[accepted[roi_id].timepoint].append(roi_id)
        tracks.append(Track(track_id=track_id, rois=dict(sorted(per_tp.items()))))
    tracks.sort(key=lambda t: t.track_id)
    return tracks
