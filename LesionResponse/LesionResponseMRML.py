"""Everything the LesionResponse module does with MRML, without Qt (testable with ``slicer-core``).

Coordinates: the library speaks DICOM patient coordinates (LPS, mm); Slicer speaks RAS (mm).
:func:`lps_to_ras` is the one place where one becomes the other.

Transforms: ``transforms/tp{i}_to_tp{j}.tfm`` are ITK files mapping physical points of the fixed scan
``i`` to the moving scan ``j`` (LPS). Slicer's transform storage node reads them, converts LPS to RAS and
stores them as *transform from parent*: ``node.GetTransformFromParent()`` maps RAS points of time point
``i`` to RAS points of time point ``j``; ``GetTransformToParent()`` maps ``j`` back to ``i``.
"""

from __future__ import annotations

import json
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import slicer

from LesionResponseLib.datamodel import Analysis, LesionROI
from LesionResponseLib.errors import LesionResponseError, describe

# One palette module-wide (RGB 0..1): ROI categories, track categories, and rejected ROIs.
CATEGORY_COLORS: dict[str, tuple[float, float, float]] = {
    "baseline": (0.30, 0.60, 1.00),
    "new": (0.75, 0.20, 0.95),
    "increasing": (0.90, 0.10, 0.10),
    "stable": (1.00, 0.80, 0.10),
    "decreasing": (0.10, 0.75, 0.25),
    "disappearing": (0.10, 0.75, 0.75),
    "absent": (0.50, 0.50, 0.50),
    "rejected": (0.35, 0.35, 0.35),
}
LAYOUT_ID = 15001  # custom layout id (Slicer reserves ids < 100 for its own layouts)
MAX_TIMEPOINTS_SHOWN = 7  # views side by side that stay readable on one screen
PET_OPACITY = 0.4  # foreground (PET) opacity over the CT background
PET_SUV_WINDOW = (0.0, 10.0)  # SUV display range of the fused PET (DOTATATE lesions ~5-50 SUV)
ROI_ID_TAG = "LesionResponse.roi_id"  # segment tag holding the library's ROI id


class SlicerLoadError(LesionResponseError):
    """An analysis folder could not be turned into Slicer nodes."""


@dataclass
class LoadedNodes:
    """The MRML nodes of one analysis (dicts keyed by time point index)."""

    out_dir: Path
    analysis: Analysis
    pet: dict[int, Any] = field(default_factory=dict)
    ct: dict[int, Any] = field(default_factory=dict)
    segmentations: dict[int, Any] = field(default_factory=dict)
    segment_ids: dict[str, tuple[int, str]] = field(default_factory=dict)  # roi_id -> (tp, segment id)
    table: Any = None
    transforms: dict[tuple[int, int], Any] = field(default_factory=dict)  # (fixed, moving) -> node
    slice_nodes: dict[int, Any] = field(default_factory=dict)
    color_by: str = "category"  # "category" | "track"
    roi_categories: dict[str, str] = field(default_factory=dict)
    last_track: dict[str, int] = field(default_factory=dict)  # roi_id -> latest track id it belonged to

    @property
    def scene(self) -> Any:
        return next(iter(self.segmentations.values())).GetScene()


def lps_to_ras(point: Sequence[float]) -> tuple[float, float, float]:
    """DICOM patient coordinates (LPS, mm) to Slicer RAS (mm), and back (the map is its own inverse)."""
    x, y, z = (float(c) for c in point)
    return (-x, -y, z)


ras_to_lps = lps_to_ras


# ---------------------------------------------------------------------------------------------- loading
def read_analysis(out_dir: str | Path) -> Analysis:
    """The :class:`Analysis` stored in ``out_dir/analysis.json``."""
    path = Path(out_dir) / "analysis.json"
    if not path.is_file():
        raise SlicerLoadError(describe("no analysis.json", path=path,
                                       fix="Choose an analysis output folder (lesion-response analyze INPUT -o OUT)."))
    try:
        return Analysis.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as error:
        raise SlicerLoadError(describe(f"unreadable analysis.json ({error})", path=path,
                                       fix="Re-run the analysis to rewrite it.")) from error


def roi_categories(analysis: Analysis) -> dict[str, str]:
    """ROI id -> category (``rois.csv`` rule of the analysis stage; empty for rejected/untracked ROIs)."""
    from LesionResponseLib.analysis import roi_categories as library_roi_categories

    return library_roi_categories(analysis.tracks, analysis.responses, analysis.rois)


def track_of(analysis: Analysis) -> dict[str, int]:
    """ROI id -> track id."""
    return {rid: t.track_id for t in analysis.tracks for ids in t.rois.values() for rid in ids}


def segment_name(roi: LesionROI, track_id: int | None, category: str) -> str:
    """Display name of a lesion-ROI segment, e.g. ``T012 tp1 increasing``."""
    track = f"T{track_id:03d}" if track_id is not None else "T---"
    state = "rejected" if roi.status == "rejected" else (category or "unassessed")
    return f"{track} tp{roi.timepoint} {state}"


def track_color(track_id: int) -> tuple[float, float, float]:
    """A stable, well-spread colour per track id (golden-ratio hue walk)."""
    import colorsys

    return colorsys.hsv_to_rgb((track_id * 0.618033988749895) % 1.0, 0.75, 0.95)


def segment_color(nodes: LoadedNodes, roi: LesionROI) -> tuple[float, float, float]:
    """Colour of a ROI's segment: by category (default) or by track; rejected ROIs are grey."""
    if roi.status == "rejected":
        return CATEGORY_COLORS["rejected"]
    if nodes.color_by == "track":
        track = track_of(nodes.analysis).get(roi.roi_id)
        return track_color(track) if track is not None else CATEGORY_COLORS["absent"]
    return CATEGORY_COLORS.get(nodes.roi_categories.get(roi.roi_id, ""), CATEGORY_COLORS["absent"])


def _volumes_logic() -> Any:
    return slicer.modules.volumes.logic()


def _load_volume_file(path: Path, name: str, labelmap: bool = False) -> Any:
    """A volume node read by Slicer's own reader (NIfTI/NRRD orientation handled by Slicer)."""
    node = _volumes_logic().AddArchetypeVolume(str(path), name, 1 if labelmap else 0)
    if node is None:
        raise SlicerLoadError(describe("Slicer could not read this image", path=path,
                                       fix="Check that the file is a complete NIfTI/NRRD image."))
    return node


def _load_sitk_image(image: Any, name: str, labelmap: bool = False) -> Any:
    """A volume node from a SimpleITK image (written to a temporary NIfTI file and read back)."""
    import SimpleITK as sitk

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.nii.gz"
        sitk.WriteImage(image, str(path))
        node = _load_volume_file(path, name, labelmap)
        node.SetAndObserveStorageNodeID(None)  # the temporary file is gone
    return node


def load_images(out_dir: Path, analysis: Analysis, tp: int) -> tuple[Any, Any | None]:
    """PET (SUV) and CT volume nodes of time point ``tp``: ``suv/``/``ct/`` files if written, else DICOM."""
    suv_file, ct_file = out_dir / "suv" / f"tp{tp}.nii.gz", out_dir / "ct" / f"tp{tp}.nii.gz"
    if suv_file.is_file():
        pet = _load_volume_file(suv_file, f"PET SUV tp{tp}")
        ct = _load_volume_file(ct_file, f"CT tp{tp}") if ct_file.is_file() else None
        return pet, ct
    from LesionResponseLib.dicomio import load_timepoint

    loaded = load_timepoint(analysis.timepoints[tp])
    pet = _load_sitk_image(loaded.pet_suv, f"PET SUV tp{tp}")
    ct = _load_sitk_image(loaded.ct, f"CT tp{tp}") if loaded.ct is not None else None
    return pet, ct


def _style_pet(pet: Any) -> None:
    display = pet.GetDisplayNode()
    if display is None:
        return
    for color_id in ("vtkMRMLPETProceduralColorNodePET-Heat", "vtkMRMLColorTableNodeInferno"):
        if pet.GetScene().GetNodeByID(color_id):
            display.SetAndObserveColorNodeID(color_id)
            break
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(*PET_SUV_WINDOW)


def load_segmentation(nodes: LoadedNodes, tp: int, scene: Any, image: Any = None) -> Any:
    """Segmentation node of time point ``tp`` (one segment per ROI) from ``labels/tp{tp}.nii.gz``, or from
    ``image`` (a SimpleITK label map) when given. An existing node is refilled (its id, views stay)."""
    path = nodes.out_dir / "labels" / f"tp{tp}.nii.gz"
    if image is not None:
        labelmap = _load_sitk_image(image, f"labels tp{tp}", labelmap=True)
    elif path.is_file():
        labelmap = _load_volume_file(path, f"labels tp{tp}", labelmap=True)
    else:
        raise SlicerLoadError(describe(f"label map of time point {tp} missing", path=path,
                                       fix="Re-run the analysis; it writes labels/tp{k}.nii.gz."))
    seg = nodes.segmentations.get(tp)
    if seg is None:
        seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"Lesion-ROIs tp{tp}")
        seg.CreateDefaultDisplayNodes()
        nodes.segmentations[tp] = seg
    seg.GetSegmentation().RemoveAllSegments()
    if not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, seg):
        raise SlicerLoadError(describe("Slicer could not import the label map", path=path,
                                       fix="Check that it is an integer label image."))
    scene.RemoveNode(labelmap)
    _index_segments(nodes, tp)
    return seg


def _index_segments(nodes: LoadedNodes, tp: int) -> None:
    """Tag each segment with its ROI id (label value -> ROI of that time point)."""
    by_label = {r.label: r.roi_id for r in nodes.analysis.rois if r.timepoint == tp}
    nodes.segment_ids = {k: v for k, v in nodes.segment_ids.items() if v[0] != tp}
    segmentation = nodes.segmentations[tp].GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(i)
        segment = segmentation.GetSegment(segment_id)
        roi_id = by_label.get(segment.GetLabelValue())
        if roi_id is not None:
            segment.SetTag(ROI_ID_TAG, roi_id)
            nodes.segment_ids[roi_id] = (tp, segment_id)


def refresh_segments(nodes: LoadedNodes) -> None:
    """Rename and recolour every segment from the current analysis (after load or an edit)."""
    # a rejected ROI leaves its track; its segment keeps the last track id it had, so the reader finds it
    current = track_of(nodes.analysis)
    nodes.last_track.update(current)
    for roi in nodes.analysis.rois:
        if roi.roi_id not in nodes.segment_ids:
            continue
        tp, segment_id = nodes.segment_ids[roi.roi_id]
        segment = nodes.segmentations[tp].GetSegmentation().GetSegment(segment_id)
        track = current.get(roi.roi_id, nodes.last_track.get(roi.roi_id) if roi.status == "rejected" else None)
        segment.SetName(segment_name(roi, track, nodes.roi_categories.get(roi.roi_id, "")))
        segment.SetColor(*segment_color(nodes, roi))


def _tracks_rows(nodes: LoadedNodes) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the track table (the ``tracks.csv`` columns plus the ROI ids), from the analysis
    in memory, so that it is current after every edit."""
    analysis = nodes.analysis
    followups = range(1, len(analysis.timepoints))
    columns = ["track_id", "first_timepoint", "last_timepoint", "pattern"]
    columns += [c for k in followups for c in (f"category_t{k}", f"delta_suv_total_pct_t{k}")] + ["rois"]
    responses = {r.track_id: r for r in analysis.responses}
    rows = []
    for track in sorted(analysis.tracks, key=lambda t: t.track_id):
        response = responses.get(track.track_id)
        row: dict[str, Any] = {"track_id": track.track_id, "first_timepoint": track.first_timepoint,
                               "last_timepoint": track.last_timepoint, "pattern": response.pattern if response else "",
                               "rois": " ".join(rid for tp in sorted(track.rois) for rid in track.rois[tp])}
        for k in followups:
            delta = response.delta_suv_total_pct.get(k) if response else None
            row[f"category_t{k}"] = response.categories.get(k, "") if response else ""
            row[f"delta_suv_total_pct_t{k}"] = "" if delta is None else f"{delta:.1f}"
        rows.append(row)
    return columns, rows


def refresh_table(nodes: LoadedNodes) -> Any:
    """Fill (or create) the table node of tracks, one row per track (ids and time points as integers)."""
    import vtk

    columns, rows = _tracks_rows(nodes)
    if nodes.table is None:
        nodes.table = nodes.scene.AddNewNodeByClass("vtkMRMLTableNode", "LesionResponse tracks")
    table = nodes.table.GetTable()
    table.Initialize()
    integers = {"track_id", "first_timepoint", "last_timepoint"}
    for name in columns:
        array = vtk.vtkIntArray() if name in integers else vtk.vtkStringArray()
        array.SetName(name)
        for row in rows:
            array.InsertNextValue(int(row[name]) if name in integers else str(row[name]))
        table.AddColumn(array)
    nodes.table.Modified()
    return nodes.table


def load_transforms(nodes: LoadedNodes, scene: Any) -> None:
    """Transform nodes of the registrations (see the module docstring for the direction)."""
    for reg in nodes.analysis.registrations:
        path = nodes.out_dir / reg.transform_path
        if not path.is_file():
            continue
        storage = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
        storage.SetFileName(str(path))
        node = scene.AddNewNodeByClass("vtkMRMLTransformNode", f"tp{reg.fixed_timepoint} to tp{reg.moving_timepoint}")
        if not storage.ReadData(node):
            raise SlicerLoadError(describe("Slicer could not read this ITK transform", path=path,
                                           fix="Re-run the analysis to rewrite transforms/."))
        node.SetAndObserveStorageNodeID(storage.GetID())
        nodes.transforms[(reg.fixed_timepoint, reg.moving_timepoint)] = node


def load_analysis_into_scene(scene: Any, out_dir: str | Path, load_volumes: bool = True,
                             progress: Callable[[str, float], None] | None = None) -> LoadedNodes:
    """Turn an analysis output folder into nodes: per time point PET (SUV), CT, segmentation; tracks table;
    registration transforms. ``progress(message, fraction)`` is called between steps."""
    out = Path(out_dir)
    nodes = LoadedNodes(out_dir=out, analysis=read_analysis(out))
    n = len(nodes.analysis.timepoints)
    for tp in range(n):
        if progress:
            progress(f"Loading time point {tp}", tp / max(n, 1))
        if load_volumes:
            nodes.pet[tp], ct = load_images(out, nodes.analysis, tp)
            _style_pet(nodes.pet[tp])
            if ct is not None:
                nodes.ct[tp] = ct
        load_segmentation(nodes, tp, scene)
    nodes.roi_categories = roi_categories(nodes.analysis)
    refresh_segments(nodes)
    refresh_table(nodes)
    load_transforms(nodes, scene)
    if progress:
        progress("Loaded", 1.0)
    return nodes


# ----------------------------------------------------------------------------------------------- layout
def layout_xml(n: int, tag_prefix: str = "LRtp") -> str:
    """Slicer layout XML: one axial slice view per time point (rows of at most 4), view group = index."""
    if not 1 <= n <= MAX_TIMEPOINTS_SHOWN:
        raise SlicerLoadError(describe(f"{n} time points cannot be shown side by side",
                                       fix=f"Show at most {MAX_TIMEPOINTS_SHOWN} time points."))

    def view(k: int) -> str:
        props = {"orientation": "Axial", "viewlabel": f"T{k}", "viewcolor": "#5080c0", "viewgroup": str(k)}
        body = "".join(f'<property name="{p}" action="default">{v}</property>' for p, v in props.items())
        return f'<item><view class="vtkMRMLSliceNode" singletontag="{tag_prefix}{k}">{body}</view></item>'

    rows = [list(range(i, min(i + 4, n))) for i in range(0, n, 4)]
    inner = "".join(f'<item><layout type="horizontal">{"".join(view(k) for k in row)}</layout></item>'
                    for row in rows)
    return f'<layout type="vertical" split="true">{inner}</layout>'


def _composite_node(scene: Any, layout_name: str) -> Any:
    for node in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode", scene):
        if node.GetLayoutName() == layout_name:
            return node
    node = scene.CreateNodeByClass("vtkMRMLSliceCompositeNode")
    node.SetLayoutName(layout_name)
    node.SetSingletonTag(layout_name)
    return scene.AddNode(node)


def setup_timepoint_layout(nodes: LoadedNodes, layout_node: Any) -> dict[int, Any]:
    """Switch to the per-time-point layout; each view shows its CT, PET fused and its segmentation only."""
    n = len(nodes.analysis.timepoints)
    if layout_node.IsLayoutDescription(LAYOUT_ID):
        layout_node.SetLayoutDescription(LAYOUT_ID, layout_xml(n))
    else:
        layout_node.AddLayoutDescription(LAYOUT_ID, layout_xml(n))
    layout_node.SetViewArrangement(LAYOUT_ID)
    scene = layout_node.GetScene()
    for tp in range(n):
        slice_node = scene.GetNodeByID(f"vtkMRMLSliceNodeLRtp{tp}")
        if slice_node is None:
            raise SlicerLoadError(describe(f"Slicer created no view for time point {tp}",
                                           fix="Restart Slicer; the layout manager is not running."))
        nodes.slice_nodes[tp] = slice_node
        composite = _composite_node(scene, slice_node.GetLayoutName())
        composite.SetBackgroundVolumeID(nodes.ct[tp].GetID() if tp in nodes.ct else None)
        composite.SetForegroundVolumeID(nodes.pet[tp].GetID() if tp in nodes.pet else None)
        composite.SetForegroundOpacity(PET_OPACITY)
    for tp, seg in nodes.segmentations.items():
        display = seg.GetDisplayNode()
        display.RemoveAllViewNodeIDs()
        if tp in nodes.slice_nodes:
            display.AddViewNodeID(nodes.slice_nodes[tp].GetID())
    return nodes.slice_nodes


# ------------------------------------------------------------------------------------ navigation
def _transform_path(nodes: LoadedNodes, src: int, dst: int) -> list[tuple[Any, bool]] | None:
    """Shortest chain of (transform node, forward?) from time point ``src`` to ``dst`` (BFS)."""
    edges: dict[int, list[tuple[int, Any, bool]]] = {}
    for (fixed, moving), node in nodes.transforms.items():
        edges.setdefault(fixed, []).append((moving, node, True))
        edges.setdefault(moving, []).append((fixed, node, False))
    queue: deque[tuple[int, list[tuple[Any, bool]]]] = deque([(src, [])])
    seen = {src}
    while queue:
        tp, path = queue.popleft()
        if tp == dst:
            return path
        for nxt, node, forward in edges.get(tp, []):
            if nxt not in seen:
                seen.add(nxt)
                queue.append((nxt, path + [(node, forward)]))
    return None


def map_point_between_timepoints(nodes: LoadedNodes, ras: Sequence[float], src: int, dst: int
                                 ) -> tuple[tuple[float, float, float], bool]:
    """RAS point of time point ``src`` -> the corresponding RAS point of ``dst`` through the registrations.

    Returns ``(point, registered)``; ``registered`` is False when no chain of transforms links the two
    (then the point is returned unchanged: same scanner coordinates).
    """
    path = _transform_path(nodes, src, dst)
    if path is None:
        return (float(ras[0]), float(ras[1]), float(ras[2])), src == dst
    point = tuple(float(c) for c in ras)
    for node, forward in path:
        transform = node.GetTransformFromParent() if forward else node.GetTransformToParent()
        point = tuple(transform.TransformPoint(point))
    return point, True  # type: ignore[return-value]


def roi_centre_ras(rois: Iterable[LesionROI]) -> tuple[float, float, float] | None:
    """Volume-weighted centroid (RAS, mm) of accepted ROIs (a split track has several per time point)."""
    kept = [r for r in rois if r.status == "accepted"] or list(rois)
    if not kept:
        return None
    weight = sum(max(r.volume_ml, 1e-6) for r in kept)
    lps = [sum(r.centroid_mm[i] * max(r.volume_ml, 1e-6) for r in kept) / weight for i in range(3)]
    return lps_to_ras(lps)


def track_centres(nodes: LoadedNodes, track_id: int) -> dict[int, tuple[float, float, float]]:
    """RAS centre of a track at every time point; absent time points mapped through the registration."""
    track = nodes.analysis.track(track_id)
    rois = {r.roi_id: r for r in nodes.analysis.rois}
    centres = {tp: c for tp, ids in track.rois.items()
               if ids and (c := roi_centre_ras(rois[i] for i in ids if i in rois)) is not None}
    if not centres:
        raise SlicerLoadError(describe(f"track {track_id} has no lesion-ROI", fix="Choose another track."))
    for tp in range(len(nodes.analysis.timepoints)):
        if tp not in centres:
            # prefer a time point linked by registration, then the nearest in time
            known = min(centres, key=lambda k: (_transform_path(nodes, k, tp) is None, abs(k - tp)))
            centres[tp] = map_point_between_timepoints(nodes, centres[known], known, tp)[0]
    return dict(sorted(centres.items()))


def jump_to_track(nodes: LoadedNodes, track_id: int) -> dict[int, tuple[float, float, float]]:
    """Centre every time point's view on the track's lesion in that time point; returns the RAS centres."""
    centres = track_centres(nodes, track_id)
    for tp, slice_node in nodes.slice_nodes.items():
        slice_node.JumpSliceByCentering(*centres[tp])
    return centres


def follow_crosshair(nodes: LoadedNodes, ras: Sequence[float], src: int) -> dict[int, tuple[float, float, float]]:
    """Move the other views to the point corresponding to ``ras`` (a crosshair position in view ``src``)."""
    moved: dict[int, tuple[float, float, float]] = {}
    for tp, slice_node in nodes.slice_nodes.items():
        point = map_point_between_timepoints(nodes, ras, src, tp)[0] if tp != src else tuple(ras)
        slice_node.JumpSliceByCentering(*point)
        moved[tp] = point  # type: ignore[assignment]
    return moved


def track_ids(nodes: LoadedNodes) -> list[int]:
    """Track ids in table order (for next/previous keys)."""
    return sorted(t.track_id for t in nodes.analysis.tracks)


def step_track(nodes: LoadedNodes, current: int | None, step: int) -> int:
    """The track ``step`` places after ``current`` (wrapping); the first one when ``current`` is None."""
    ids = track_ids(nodes)
    if not ids:
        raise SlicerLoadError(describe("the analysis has no tracks", fix="Add a lesion-ROI or re-run."))
    if current not in ids:
        return ids[0]
    return ids[(ids.index(current) + step) % len(ids)]


# ------------------------------------------------------------------------------------------- review
REVIEW_OPERATIONS = ("link", "unlink", "merge", "split", "reject", "restore", "add_roi", "edit_roi", "undo", "redo")
_LABEL_CHANGING = {"merge", "split", "add_roi", "edit_roi", "undo", "redo"}


def apply_review_edit(nodes: LoadedNodes, session: Any, operation: str, **arguments: Any) -> Any:
    """Apply one reader edit through a :class:`LesionResponseLib.review.ReviewSession`, then refresh nodes.

    ``operation`` is one of :data:`REVIEW_OPERATIONS`; ``arguments`` are passed to the session's method.
    Label maps are re-read for edits that can change them; names, colours and the table always refresh.
    """
    if operation not in REVIEW_OPERATIONS:
        raise SlicerLoadError(describe(f"unknown review operation {operation!r}",
                                       fix=f"Use one of {', '.join(REVIEW_OPERATIONS)}."))
    result = getattr(session, operation)(**arguments)
    state = getattr(session, "state", None)  # ReviewState: the reviewed analysis and label maps, in memory
    analysis = getattr(state, "analysis", None)
    nodes.analysis = analysis if isinstance(analysis, Analysis) else read_analysis(nodes.out_dir)
    labels = getattr(state, "labels", None) if operation in _LABEL_CHANGING else None
    refresh_after_edit(nodes, reload_labels=operation in _LABEL_CHANGING, labels=labels)
    return result


def refresh_after_edit(nodes: LoadedNodes, reload_labels: bool = False, labels: dict[int, Any] | None = None) -> None:
    """Bring segments, colours and the table in line with ``nodes.analysis`` (categories recomputed).

    ``reload_labels``: re-import the label maps, from ``labels`` (time point -> SimpleITK image, e.g. the
    review session's in-memory maps) when given, else from ``labels/tp{k}.nii.gz``.
    """
    if reload_labels:
        scene = nodes.scene
        for tp in list(nodes.segmentations):
            load_segmentation(nodes, tp, scene, image=(labels or {}).get(tp))
    nodes.roi_categories = roi_categories(nodes.analysis)
    refresh_segments(nodes)
    refresh_table(nodes)


def review_arguments(operation: str, first: str = "", second: str = "") -> dict[str, Any]:
    """Keyword arguments of a ``ReviewSession`` edit from the two ids typed in the panel.

    link: ROI ids A and B; unlink, reject, restore: ROI id A; merge: track ids A and B; split: track id A and
    the time point B from which the ROIs form a new track; undo, redo: nothing.
    """
    def number(text: str, what: str) -> int:
        try:
            return int(text.strip().lstrip("Tt"))
        except ValueError:
            raise SlicerLoadError(describe(f"{operation} needs {what}, got {text!r}",
                                           fix="Type a number (e.g. 12 or T012).")) from None

    if operation == "link":
        return {"roi_a": first.strip(), "roi_b": second.strip()}
    if operation in ("unlink", "reject", "restore"):
        return {"roi_id": first.strip()}
    if operation == "merge":
        return {"track_a": number(first, "a track id A"), "track_b": number(second, "a track id B")}
    if operation == "split":
        return {"track_id": number(first, "a track id A"), "timepoint": number(second, "a time point B")}
    if operation in ("undo", "redo"):
        return {}
    raise SlicerLoadError(describe(f"{operation} takes a mask, not typed ids",
                                   fix="Draw the ROI in the Segment Editor and press 'Apply edited segment'."))


def export_results(out_dir: str | Path, folder: str | Path, formats: Sequence[str] = ("html", "pdf")) -> list[Path]:
    """Write the patient report (``formats``) and one DICOM SEG + SR per time point into ``folder``/``dicom``."""
    from LesionResponseLib.report import export_dicom, write_patient_report

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    reports = write_patient_report(out_dir, report_dir=target, formats=tuple(formats))
    return [Path(p) for p in reports.values()] + [Path(p) for p in export_dicom(out_dir, target / "dicom")]
