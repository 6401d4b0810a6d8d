"""Reader edits as command objects: validate against the state, apply, serialise to JSON.

Rules (refused with :class:`ReviewError` otherwise):

- A link joins two accepted ROIs of *different* time points that are in different tracks. If the two tracks
  both have ROIs at some time point, the link would create a split/merge: it is refused unless
  ``allow_split_merge=True``; :class:`MergeTracks` is that explicit request (it always allows it).
- :class:`UnlinkRoi` removes every link of the ROI (so the automatic link cannot come back on a re-run: the
  edit is replayed); the ROI's former neighbours at different time points are linked to each other so the
  rest of the track stays one track.
- :class:`SplitTrack` at time point ``k``: ROIs before ``k`` keep the track, ROIs from ``k`` on form a new
  one; ``k`` must be after the track's first and not after its last time point.
- A rejected ROI keeps its links, so :class:`RestoreRoi` brings the track back; while rejected it is in no
  track, but its accepted neighbours at different time points stay one track (a gap where it was; a reader
  separates lesions with unlink or split, ``tracking.tracks._bridges``).
- :class:`AddRoi` paints a new label (max label + 1) on background voxels only and is *not* linked
  automatically: the reader links it explicitly. :class:`EditRoi` replaces the ROI's voxels. Masks may not
  overlap another ROI. Both re-measure with ``analysis.measure_rois`` on the SUV PET, give the ROI its site by the
  automatic rule (``analysis.sites``; a site the reader set on an edited ROI stays) and re-check the time point's
  reference regions against the changed ROIs.
- :class:`MoveReferenceRegion` puts a reference region's sphere where the reader says (re-measured and checked by
  ``analysis.reference_regions``); the ratios and grades follow. :class:`SetRoiSite` sets a ROI's site.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.datamodel import LESION_SITES, REFERENCE_ORGANS, Link, Track, roi_id_for
from LesionResponseLib.errors import describe
from LesionResponseLib.review.state import Engine, ReviewState, load_mask, recompute
from LesionResponseLib.review.store import ReviewError


@dataclass
class ApplyContext:
    """What an edit may need besides the state: the stage functions, the review folder, the SUV PET."""

    engine: Engine
    review_dir: Path
    suv: Callable[[int], sitk.Image]  # time point -> SUV PET image (float32, SUV)
    organs: Callable[[int], Any] = lambda _tp: None  # time point -> segmentation.organs.Organs, None if unknown


def _refuse(problem: str, fix: str) -> ReviewError:
    return ReviewError(describe(problem, path="review", fix=fix))


def _accepted(state: ReviewState, roi_id: str) -> None:
    if state.roi(roi_id).status != "accepted":
        raise _refuse(f"lesion-ROI {roi_id} is rejected", f"Restore it first (review OUT restore {roi_id})")


def _track_timepoints(state: ReviewState, track_id: int) -> set[int]:
    return {tp for tp, ids in _track(state, track_id).rois.items() if ids}


def _track(state: ReviewState, track_id: int) -> Track:
    try:
        return state.analysis.track(int(track_id))
    except KeyError:
        raise _refuse(f"no track {track_id} in this analysis", "Check the id in tracks.csv") from None


def track_roi_ids(state: ReviewState, track_id: int) -> list[str]:
    """The lesion-ROIs of track ``track_id`` (time point order), or a :class:`ReviewError` naming the track."""
    track = _track(state, track_id)
    return [roi_id for tp in sorted(track.rois) for roi_id in track.rois[tp]]


@dataclass
class Edit:
    """Base of every edit. ``ROI_PARAMS``/``TRACK_PARAMS`` name the fields holding ROI ids / track ids,
    ``ROI_LIST_PARAMS`` those holding lists of ROI ids."""

    TYPE: ClassVar[str] = ""
    ROI_PARAMS: ClassVar[tuple[str, ...]] = ()
    TRACK_PARAMS: ClassVar[tuple[str, ...]] = ()
    ROI_LIST_PARAMS: ClassVar[tuple[str, ...]] = ()

    def validate(self, state: ReviewState) -> None:
        """Raise :class:`ReviewError` if this edit conflicts with ``state``."""

    def change(self, state: ReviewState, ctx: ApplyContext, edit_id: str) -> None:
        """Modify ``state`` (links, ROIs, labels); the recomputation follows in :meth:`apply`."""
        raise NotImplementedError

    def apply(self, state: ReviewState, ctx: ApplyContext, edit_id: str = "") -> ReviewState:
        """Validate, change ``state`` in place, recompute tracks and categories; returns ``state``."""
        self.validate(state)
        self.change(state, ctx, edit_id)
        return recompute(state, ctx.engine)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"type": ..., <fields>}``."""
        return {"type": self.TYPE, **dataclasses.asdict(self)}

    def anchors(self, state: ReviewState) -> dict[str, str]:
        """Parameter -> ROI id it refers to (a track is represented by its first ROI; the i-th ROI of a list
        parameter ``name`` is ``name.i``)."""
        refs = {name: getattr(self, name) for name in self.ROI_PARAMS}
        for name in self.ROI_LIST_PARAMS:
            refs.update({f"{name}.{i}": roi_id for i, roi_id in enumerate(getattr(self, name))})
        for name in self.TRACK_PARAMS:
            track = _track(state, getattr(self, name))
            refs[name] = track.rois[track.first_timepoint][0]
        return refs


def retarget(edit: Edit, anchors: dict[str, str], roi_map: dict[str, str], state: ReviewState) -> Edit:
    """``edit`` with each anchored parameter replaced by its re-identified ROI (or that ROI's track)."""
    values: dict[str, Any] = {name: list(getattr(edit, name)) for name in edit.ROI_LIST_PARAMS}
    for name, roi_id in anchors.items():
        new_id = roi_map[roi_id]
        if "." in name:
            listed, index = name.rsplit(".", 1)
            values[listed][int(index)] = new_id
        else:
            values[name] = new_id if name in edit.ROI_PARAMS else state.track_id_of(new_id)
    return dataclasses.replace(edit, **values)


@dataclass
class LinkRois(Edit):
    """Put ``roi_a`` and ``roi_b`` (different time points) in one track."""

    TYPE: ClassVar[str] = "link"
    ROI_PARAMS: ClassVar[tuple[str, ...]] = ("roi_a", "roi_b")
    roi_a: str
    roi_b: str
    allow_split_merge: bool = False

    def validate(self, state: ReviewState) -> None:
        a, b = state.roi(self.roi_a), state.roi(self.roi_b)
        _accepted(state, a.roi_id)
        _accepted(state, b.roi_id)
        if a.timepoint == b.timepoint:
            raise _refuse(f"{a.roi_id} and {b.roi_id} are both at time point {a.timepoint}; a link joins "
                          "ROIs of different time points", "Link each of them to a ROI of another time point")
        ta, tb = state.track_id_of(a.roi_id), state.track_id_of(b.roi_id)
        if ta == tb:
            raise _refuse(f"{a.roi_id} and {b.roi_id} are already in track {ta}", "Nothing to do")
        shared = _track_timepoints(state, ta) & _track_timepoints(state, tb)
        if shared and not self.allow_split_merge:
            raise _refuse(f"linking {a.roi_id} and {b.roi_id} would put two ROIs of time point(s) "
                          f"{sorted(shared)} into one track (a split/merge)",
                          f"If that is meant, merge the tracks (review OUT merge {ta} {tb})")

    def change(self, state: ReviewState, ctx: ApplyContext, edit_id: str) -> None:
        a, b = sorted((state.roi(self.roi_a), state.roi(self.roi_b)), key=lambda r: r.timepoint)
        state.analysis.links.append(Link(a.roi_id, b.roi_id, kind="reader", source="reader"))


@dataclass
class UnlinkRoi(Edit):
    """Take ``roi_id`` out of its track (it becomes a track of its own)."""

    TYPE: ClassVar[str] = "unlink"
    ROI_PARAMS: ClassVar[tuple[str, ...]] = ("roi_id",)
    roi_id: str

    def validate(self, state: ReviewState) -> None:
        _accepted(state, self.roi_id)
        track = _track(state, state.track_id_of(self.roi_id))
        if sum(len(ids) for ids in track.rois.values()) < 2:
            raise _refuse(f"lesion-ROI {self.roi_id} is alone in track {track.track_id}", "Nothing to unlink")

    def change(self, state: ReviewState, ctx: ApplyContext, edit_id: str) -> None:
        links = state.analysis.links
        touching = [x for x in links if self.roi_id in (x.roi_a, x.roi_b)]
        state.analysis.links = [x for x in links if self.roi_id not in (x.roi_a, x.roi_b)]
        neighbours = sorted({x.roi_b if x.roi_a == self.roi_id else x.roi_a for x in touching},
                            key=lambda r: (state.roi(r).timepoint, r))
        for i, a in enumerate(neighbours):
            for b in neighbours[i + 1:]:
                if state.roi(a).timepoint != state.roi(b).timepoint:
                    state.analysis.links.append(Link(a, b, kind="reader", source="reader"))


@dataclass
class MergeTracks(Edit):
    """Join two tracks (split/merge allowed: both may have ROIs at the same time point)."""

    TYPE: ClassVar[str] = "merge"
    TRACK_PARAMS: ClassVar[tuple[str, ...]] = ("track_a", "track_b")
    track_a: int
    track_b: int

    def validate(self, state: ReviewState) -> None:
        if int(self.track_a) == int(self.track_b):
            raise _refuse(f"cannot merge track {self.track_a} with itself", "Give two different track ids")
        if len(_track_timepoints(state, self.track_a) | _track_timepoints(state, self.track_b)) < 2:
            raise _refuse(f"tracks {self.track_a} and {self.track_b} only have ROIs at one time point",
                          "Tracks join ROIs of different time points")

    def change(self, state: ReviewState, ctx: ApplyContext, edit_id: str) -> None:
        ra = [(tp, r) for tp, ids in _track(state, self.track_a).rois.items() for r in ids]
        rb = [(tp, r) for tp, ids in _track(state, self.track_b).rois.items() for r in ids]
        pairs = [(abs(ta - tb), ta, tb, a, b) for ta, a in ra for tb, b in rb if ta != tb]
        _gap, ta, tb, a, b = min(pairs)
        first, second = (a, b) if ta < tb else (b, a)
        state.analysis.links.append(Link(first, second, kind="reader", source="reader"))


@dataclass
class SplitTrack(Edit):
    """Cut ``track_id`` before ``timepoint``: its ROIs from ``timepoint`` on form a new track."""

    TYPE: ClassVar[str] = "split"
    TRACK_PARAMS: ClassVar[tuple[str, ...]] = ("track_id",)
    track_id: int
    timepoint: int

    def validate(self, state: ReviewState) -> None:
        track = _track(state, self.track_id)
        if not track.first_timepoint < int(self.timepoint) <= track.last_timepoint:
            raise _refuse(f"track {self.track_id} spans time points {track.first_timepoint}.."
                          f"{track.last_timepoint}; cannot split it at {self.timepoint}",
                          f"Give a time point in {track.first_timepoint + 1}..{track.last_timepoint}")

    def change(self, state: ReviewState, ctx: ApplyContext, edit_id: str) -> None:
        members = set(track_roi_ids(state, self.track_id))
        cut = int(self.timepoint)

        def crosses(link: Link) -> bool:
            if link.roi_a not in members or link.roi_b not in members:
                return False
            tps = sorted((state.roi(link.roi_a).timepoint, state.roi(link.roi_b).timepoint))
            return tps[0] < cut <= tps[1]

        state.analysis.links = [x for x in state.analysis.links if not crosses(x)]


@dataclass
class RejectRoi(Edit):
    """Mark ``roi_id`` as not a lesion (physiological uptake, artefact); ``reason`` is kept in the audit."""

    TYPE: ClassVar[str] = "reject"
    ROI_PARAMS: ClassVar[tuple[str, ...]] = ("roi_id",)
    roi_id: str
    reason: str = ""

    def validate(self, state: ReviewState) -> None:
        if state.roi(self.roi_id).status == "rejected":
            raise _refuse(f"lesion-ROI {self.roi_id} is already rejected", "Nothing to do")

    def change(self, state: ReviewState, ctx: ApplyContext, edit_id: str) -> None:
        state.roi(self.roi_id).status = "rejected"


@dataclass
class RejectRois(Edit):
    """Mark every ROI of ``roi_ids`` as not a lesion in one edit (one undo step): a whole track of
    physiological uptake (an adrenal followed to every scan) is rejected at once. The ids, not the track, are
    stored, so a re-run rejects those lesion-ROIs again, never a lesion that joined the track since."""

    TYPE: ClassVar[str] = "reject_rois"
    ROI_LIST_PARAMS: ClassVar[tuple[str, ...]] = ("roi_ids",)
    roi_ids: list[str]
    reason: str = ""

    def validate(self, state: ReviewState) -> None:
        if not self.roi_ids:
            raise _refuse("no lesion-ROIs to reject", "Give the ROI ids, or a track that has accepted ROIs")
        if all(state.roi(roi_id).status == "rejected" for roi_id in self.roi_ids):
            raise _refuse(f"lesion-ROIs {', '.join(self.roi_ids)} are already rejected", "Nothing to do")

    def change(self, state: ReviewState, ctx: ApplyContext, edit_id: str) -> None:
        for roi_id in self.roi_ids:
            state.roi(roi_id).status = "rejected"


@dataclass
class RestoreRoi(Edit):
    """Accept a rejected ROI again (its former links take effect again)."""

    TYPE: ClassVar[str] = "restore"
    ROI_PARAMS: ClassVar[tuple[str, ...]] = ("roi_id",)
    roi_id: str

    def validate(self, state: ReviewState) -> None:
        if state.roi(self.roi_id).status != "rejected":
            raise _refuse(f"lesion-ROI {self.roi_id} is not rejected", "Nothing to restore")

    def change(self, state: ReviewState, ctx: ApplyContext, edit_id: str) -> None:
        state.roi(self.roi_id).status = "accepted"


def _paint(state: ReviewState, timepoint: int, mask: sitk.Image, label: int, ctx: ApplyContext) -> None:
    """Set ``label`` on the mask's voxels (after clearing ``label``), refuse overlap, re-measure."""
    current = state.labels[timepoint]
    array = sitk.GetArrayFromImage(current)
    inside = sitk.GetArrayFromImage(load_mask(mask, current)) > 0
    if not inside.any():
        raise _refuse(f"the mask for time point {timepoint} is empty on the PET grid",
                      "Draw the ROI on that time point's PET")
    others = np.unique(array[inside & (array != 0) & (array != label)])
    if others.size:
        ids = ", ".join(roi_id_for(timepoint, int(v)) for v in others)
        raise _refuse(f"the mask overlaps lesion-ROI(s) {ids}", "Edit those ROIs instead, or erase the overlap")
    array[array == label] = 0
    array[inside] = label
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(current)
    state.labels[timepoint] = image
    measured = ctx.engine.measure_rois(image, ctx.suv(timepoint), timepoint,
                                       settings=state.analysis.parameters.quantification)
    new = next(r for r in measured if r.label == label)
    _refresh_neighbour_pvc(state, timepoint, measured, label)
    roi_id = roi_id_for(timepoint, label)
    kept = next((r for r in state.analysis.rois if r.roi_id == roi_id), None)
    new.roi_id, new.timepoint = roi_id, timepoint
    organs = ctx.organs(timepoint)
    if organs is not None and organs.found and state.analysis.timepoints[timepoint].ct_series_instance_uid:
        new.site = ctx.engine.lesion_sites(image, organs, only=[label]).get(label, "")
    if kept is None:
        new.source = "reader"
        state.analysis.rois.append(new)
    else:
        new.status, new.source = kept.status, kept.source
        if kept.site_source == "reader":
            new.site, new.site_source = kept.site, kept.site_source
        state.analysis.rois[state.analysis.rois.index(kept)] = new
    _recheck_references(state, timepoint, ctx)


def _recheck_references(state: ReviewState, timepoint: int, ctx: ApplyContext) -> None:
    """Measure the placed reference regions of ``timepoint`` again where they are (their checks see the ROIs now)."""
    for region in [r for r in state.analysis.reference_regions if r.timepoint == timepoint and r.placed]:
        _put_reference(state, ctx, region.organ, timepoint, region.centre_mm, region.diameter_mm, region.source)


def _put_reference(state: ReviewState, ctx: ApplyContext, organ: str, timepoint: int, centre_mm: Any,
                   diameter: float, source: str) -> None:
    """Replace the reference region of ``organ`` at ``timepoint`` by a sphere measured at ``centre_mm``."""
    from LesionResponseLib.analysis.reference_regions import check_spleen_above_liver

    analysis = state.analysis
    region = ctx.engine.measure_reference(ctx.suv(timepoint), state.labels[timepoint], ctx.organs(timepoint),
                                          timepoint, organ, tuple(float(c) for c in centre_mm), float(diameter),
                                          analysis.parameters, source=source)
    analysis.reference_regions = [r for r in analysis.reference_regions
                                  if (r.timepoint, r.organ) != (timepoint, organ)] + [region]
    analysis.reference_regions.sort(key=lambda r: (r.timepoint, REFERENCE_ORGANS.index(r.organ)))
    check_spleen_above_liver(analysis.reference_regions)


def _refresh_neighbour_pvc(state: ReviewState, timepoint: int, measured: list, edited: int) -> None:
    """Update the corrected SUVtotal of the other ROIs of ``timepoint`` and what depends on their surroundings (its
    SD, the background around them): they share spill-over regions with the edited ROI
    (``analysis.quantify.pvc_suv_totals``); their masks and other measures are unchanged."""
    fresh = {r.label: r for r in measured if r.label != edited}
    for roi in state.analysis.rois:
        if roi.timepoint == timepoint and roi.label in fresh:
            new = fresh[roi.label]
            roi.suv_total_pvc, roi.suv_total_pvc_sd = new.suv_total_pvc, new.suv_total_pvc_sd
            roi.suv_total_sd, roi.background_suv = new.suv_total_sd, new.background_suv


def _mask_path(ctx: ApplyContext, mask: str) -> Path:
    path = Path(mask)
    return path if path.is_absolute() else ctx.review_dir / path


@dataclass
class AddRoi(Edit):
    """Add a ROI drawn by the reader at ``timepoint`` (``mask``: file, relative to ``review/``). Not linked."""

    TYPE: ClassVar[str] = "add"
    timepoint: int
    mask: str

    def validate(self, state: ReviewState) -> None:
        state.label_array(int(self.timepoint))

    def change(self, state: ReviewState, ctx: ApplyContext, edit_id: str) -> None:
        tp = int(self.timepoint)
        used = [r.label for r in state.analysis.rois if r.timepoint == tp] + [int(state.label_array(tp).max())]
        label = max(used) + 1
        _paint(state, tp, sitk.ReadImage(str(_mask_path(ctx, self.mask))), label, ctx)
        state.created[edit_id] = roi_id_for(tp, label)


@dataclass
class EditRoi(Edit):
    """Replace the voxels of ``roi_id`` with ``mask`` (file, relative to ``review/``) and re-measure it."""

    TYPE: ClassVar[str] = "edit"
    ROI_PARAMS: ClassVar[tuple[str, ...]] = ("roi_id",)
    roi_id: str
    mask: str

    def validate(self, state: ReviewState) -> None:
        state.roi(self.roi_id)

    def change(self, state: ReviewState, ctx: ApplyContext, edit_id: str) -> None:
        roi = state.roi(self.roi_id)
        _paint(state, roi.timepoint, sitk.ReadImage(str(_mask_path(ctx, self.mask))), roi.label, ctx)


@dataclass
class ImportRois(Edit):
    """Reference contours as reader ROIs, all in one edit (one undo step): ``rois`` lists ``{"timepoint", "mask",
    "name"}`` (``mask``: file relative to ``review/``, on the PET grid). A structure that overlaps ROIs of its time
    point replaces the one it overlaps most (that ROI keeps its id, track and links, takes the structure's voxels
    except those of other ROIs, becomes a ``reader`` ROI and, if it was rejected, is accepted again: the reference is
    the reader's word); one that overlaps none becomes a new reader ROI on the free voxels. Structures of one name at different time points are linked (the reference's naming says they
    are one lesion). ``source`` names the files, for the audit trail."""

    TYPE: ClassVar[str] = "import_rois"
    rois: list[dict[str, Any]]
    source: str = ""

    def validate(self, state: ReviewState) -> None:
        if not self.rois:
            raise _refuse("no reference structure to import", "Give RTSTRUCT/SEG files or label maps with structures")
        for item in self.rois:
            state.label_array(int(item["timepoint"]))

    def change(self, state: ReviewState, ctx: ApplyContext, edit_id: str) -> None:
        by_name: dict[str, dict[int, list[str]]] = {}
        claimed: set[str] = set()  # ROIs an earlier structure of this import became: never replaced again
        for i, item in enumerate(self.rois):
            tp = int(item["timepoint"])
            roi_id = self._place(state, ctx, tp, _mask_path(ctx, item["mask"]), str(item.get("name", "")), claimed)
            state.roi(roi_id).source = "reader"
            state.created[f"{edit_id}.{i}"] = roi_id
            claimed.add(roi_id)
            name = " ".join(str(item.get("name", "")).lower().split())
            if name:
                by_name.setdefault(name, {}).setdefault(tp, []).append(roi_id)
        for per_timepoint in by_name.values():
            times = sorted(per_timepoint)
            for before, after in zip(times, times[1:], strict=False):
                state.analysis.links += [Link(a, b, kind="reader", source="reader")
                                         for a in per_timepoint[before] for b in per_timepoint[after]]

    @staticmethod
    def _place(state: ReviewState, ctx: ApplyContext, tp: int, path: Path, name: str, claimed: set[str]) -> str:
        """Paint one structure (the class docstring's rules); its ROI id."""
        inside = sitk.GetArrayFromImage(load_mask(sitk.ReadImage(str(path)), state.labels[tp])) > 0
        array = state.label_array(tp)
        candidates = [r.label for r in state.analysis.rois if r.timepoint == tp and r.roi_id not in claimed]
        hit = array[inside & np.isin(array, candidates)]
        target = int(np.bincount(hit).argmax()) if hit.size else 0
        free = inside & ((array == 0) | (array == target)) if target else inside & (array == 0)
        if not free.any():
            raise _refuse(f"reference structure {name!r} at time point {tp} lies wholly on structures imported "
                          "before it", "Leave the duplicate out (--names)")
        mask = sitk.GetImageFromArray(free.astype(np.uint8))
        mask.CopyInformation(state.labels[tp])
        if not target:
            used = [r.label for r in state.analysis.rois if r.timepoint == tp] + [int(array.max())]
            target = max(used) + 1
        _paint(state, tp, mask, target, ctx)
        state.roi(roi_id_for(tp, target)).status = "accepted"
        return roi_id_for(tp, target)


@dataclass
class MarkReviewed(Edit):
    """The reader looked at track ``track_id`` (its ROIs, links and categories): it leaves the review queue's list
    of what is left (``analysis.queue``); undo takes the mark back. The mark follows the track's id, which the
    recomputation keeps stable; a track merged into another keeps the other's mark."""

    TYPE: ClassVar[str] = "reviewed"
    TRACK_PARAMS: ClassVar[tuple[str, ...]] = ("track_id",)
    track_id: int

    def validate(self, state: ReviewState) -> None:
        _track(state, self.track_id)
        if int(self.track_id) in state.analysis.reviewed_tracks:
            raise _refuse(f"track {self.track_id} is already marked reviewed", "Nothing to do (undo takes a mark back)")

    def change(self, state: ReviewState, ctx: ApplyContext, edit_id: str) -> None:
        state.analysis.reviewed_tracks = sorted({*state.analysis.reviewed_tracks, int(self.track_id)})


@dataclass
class MoveReferenceRegion(Edit):
    """Put the ``organ`` reference region of ``timepoint`` at ``centre_mm`` (LPS, mm, that time point's scan), a
    sphere of ``diameter_mm`` (default: the region's, else the configured one); re-measured and checked."""

    TYPE: ClassVar[str] = "move_reference"
    timepoint: int
    organ: str
    centre_mm: list[float]
    diameter_mm: float | None = None

    def validate(self, state: ReviewState) -> None:
        if self.organ not in REFERENCE_ORGANS:
            raise _refuse(f"no reference region in {self.organ!r}", f"Use one of {', '.join(REFERENCE_ORGANS)}")
        state.label_array(int(self.timepoint))
        if len(self.centre_mm) != 3:
            raise _refuse(f"centre {self.centre_mm} is not a point (x, y, z mm)", "Give three coordinates (LPS, mm)")
        if self.diameter_mm is not None and not 5.0 <= float(self.diameter_mm) <= 100.0:
            raise _refuse(f"diameter {self.diameter_mm} mm is not a reference sphere's", "Give 5-100 mm")

    def change(self, state: ReviewState, ctx: ApplyContext, edit_id: str) -> None:
        from LesionResponseLib.analysis.reference_regions import diameter_mm

        tp = int(self.timepoint)
        current = state.analysis.reference(tp, self.organ)
        diameter = self.diameter_mm or (current.diameter_mm if current is not None
                                        else diameter_mm(state.analysis.parameters, self.organ))
        _put_reference(state, ctx, self.organ, tp, self.centre_mm, diameter, "reader")


@dataclass
class SetRoiSite(Edit):
    """Set the site of ``roi_id`` (one of ``datamodel.LESION_SITES``): the reader's correction of the rule."""

    TYPE: ClassVar[str] = "set_site"
    ROI_PARAMS: ClassVar[tuple[str, ...]] = ("roi_id",)
    roi_id: str
    site: str

    def validate(self, state: ReviewState) -> None:
        roi = state.roi(self.roi_id)
        if self.site not in LESION_SITES:
            raise _refuse(f"unknown site {self.site!r}", f"Use one of {', '.join(LESION_SITES)}")
        if roi.site == self.site and roi.site_source == "reader":
            raise _refuse(f"lesion-ROI {self.roi_id} already has site {self.site}", "Nothing to do")

    def change(self, state: ReviewState, ctx: ApplyContext, edit_id: str) -> None:
        roi = state.roi(self.roi_id)
        roi.site, roi.site_source = self.site, "reader"


EDIT_TYPES: dict[str, type[Edit]] = {cls.TYPE: cls for cls in (
    LinkRois, UnlinkRoi, MergeTracks, SplitTrack, RejectRoi, RejectRois, RestoreRoi, AddRoi, EditRoi, ImportRois,
    MarkReviewed, MoveReferenceRegion, SetRoiSite)}


def edit_from_dict(data: dict[str, Any]) -> Edit:
    """The edit object of a JSON form made by :meth:`Edit.to_dict`."""
    cls = EDIT_TYPES.get(data.get("type", ""))
    if cls is None:
        raise ReviewError(describe(f"unknown edit type {data.get('type')!r}", path="review/session.json",
                                   fix=f"Known types: {', '.join(EDIT_TYPES)}"))
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
