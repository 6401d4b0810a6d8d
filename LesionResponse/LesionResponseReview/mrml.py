"""Everything the review does with MRML, without Qt: shared by the Slicer module and the web app.

One function per operation either face calls: load an analysis into a scene (:func:`load_analysis_into_scene`),
show it one view per time point (:func:`attach_views`, :func:`setup_timepoint_layout` for desktop Slicer's
layout node), jump to a track (:func:`select_track`, :func:`jump_to_track`), map a point between time points
through the registrations (:func:`map_point_between_timepoints`, :class:`ViewLinker`), apply/undo a reader
edit (:func:`apply_review_edit` with a typed :mod:`LesionResponseLib.review.edits` object,
:func:`undo_review_edit`, :func:`redo_review_edit`) and refresh colours and table (:func:`refresh_after_edit`). Tested headless
with ``slicer-core``; the only Slicer API used is MRML (``slicer.vtkMRML*``), so the same code runs in desktop
Slicer, in trame-slicer and in the tests.

Coordinates: the library speaks DICOM patient coordinates (LPS, mm); Slicer speaks RAS (mm).
:func:`lps_to_ras` is the one place where one becomes the other.

Overlay: each time point's lesion-ROIs are a label map volume in the slice views' *label layer*, drawn as
outlines (``UseLabelOutline``) with a colour table per time point (label value -> ROI colour), so the fused
CT/PET stays readable under it. A segmentation node is made only on demand, for desktop Segment Editor work
(:func:`segmentation_for_editing`).

Transforms: ``transforms/tp{i}_to_tp{j}.tfm|.h5`` are ITK files mapping physical points of the fixed scan
``i`` to the moving scan ``j`` (LPS). Slicer's transform storage node reads them, converts LPS to RAS and
stores them as *transform from parent*: ``node.GetTransformFromParent()`` maps RAS points of time point
``i`` to RAS points of time point ``j``; ``GetTransformToParent()`` maps ``j`` back to ``i``.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from LesionResponseLib.datamodel import Analysis, LesionROI
from LesionResponseLib.errors import LesionResponseError, describe
from LesionResponseLib.report.data import CATEGORY_COLOURS


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    value = hex_colour.lstrip("#")
    return tuple(int(value[i:i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


# One palette for the report and both review faces (RGB 0..1): the report's category colours, plus rejected ROIs.
CATEGORY_COLORS: dict[str, tuple[float, float, float]] = {k: _rgb(v) for k, v in CATEGORY_COLOURS.items()}
CATEGORY_COLORS["rejected"] = _rgb("#8c8c8c")  # grey: not a lesion (colour tables hold 8 bits)
LAYOUT_ID = 15001  # custom layout id (Slicer reserves ids < 100 for its own layouts)
MAX_TIMEPOINTS_SHOWN = 7  # views side by side that stay readable on one screen
PET_OPACITY = 0.5  # foreground (PET) opacity over the CT background: both stay visible
REFERENCE_COLOUR = (1.0, 0.0, 1.0)  # the reference spheres' outline: magenta, as on the report's MIPs
# SUV display range of the fused PET (docs/DOMAIN.md §5): liver SUVmean ~5 sits in the lower quarter, NET lesions
# (SUVmax 15-80) in the upper half and above, so they stand out of the liver; the reader adjusts it.
PET_SUV_WINDOW = (0.0, 20.0)
#: SUV at and above which the PET is drawn over the CT: the blood pool (~1.5). Fat, muscle (0.5-1) and air stay
#: transparent; at 1.0 the voxel noise of muscle crossed the floor in 15 % of its voxels (37 % of all drawn voxels
#: on the demo patient), a speckle that hid small ROIs. Liver (2-12) and lesions are always drawn.
PET_TRANSPARENT_BELOW = 1.5
CT_WINDOW = (-160.0, 240.0)  # HU, soft-tissue window (W 400 / L 40), the usual fusion background
UNSELECTED_ALPHA = 0.6  # outline opacity of ROIs outside the selected track (the selected one is opaque)
ROI_ID_TAG = "LesionResponse.roi_id"  # segment tag holding the library's ROI id (Segment Editor work)
ORIENTATIONS = ("Axial", "Coronal", "Sagittal")


class SlicerLoadError(LesionResponseError):
    """An analysis folder could not be turned into Slicer nodes, or a view operation is not possible."""


@dataclass
class LoadedNodes:
    """The MRML nodes of one analysis (dicts keyed by time point index) and the display choices."""

    out_dir: Path
    analysis: Analysis
    scene: Any = None
    pet: dict[int, Any] = field(default_factory=dict)
    ct: dict[int, Any] = field(default_factory=dict)
    labels: dict[int, Any] = field(default_factory=dict)  # label map volume nodes (label layer)
    colors: dict[int, Any] = field(default_factory=dict)  # colour table node per time point
    label_arrays: dict[int, np.ndarray] = field(default_factory=dict)  # (z, y, x) copy of what is shown
    segmentations: dict[int, Any] = field(default_factory=dict)  # only made for Segment Editor work
    table: Any = None
    transforms: dict[tuple[int, int], Any] = field(default_factory=dict)  # (fixed, moving) -> node
    slice_nodes: dict[int, Any] = field(default_factory=dict)
    color_by: str = "category"  # "category" | "track"
    selected_track: int | None = None
    roi_categories: dict[str, str] = field(default_factory=dict)
    last_track: dict[str, int] = field(default_factory=dict)  # roi_id -> latest track id it belonged to
    reference_models: dict[tuple[int, str], Any] = field(default_factory=dict)  # (tp, organ) -> sphere model node


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
    """Display name of a lesion-ROI, e.g. ``T012 tp1 increasing``."""
    track = f"T{track_id:03d}" if track_id is not None else "T---"
    state = "rejected" if roi.status == "rejected" else (category or "unassessed")
    return f"{track} tp{roi.timepoint} {state}"


def track_color(track_id: int) -> tuple[float, float, float]:
    """A stable, well-spread colour per track id (golden-ratio hue walk), on 8 bits like the colour tables."""
    import colorsys

    rgb = colorsys.hsv_to_rgb((track_id * 0.618033988749895) % 1.0, 0.75, 0.95)
    return tuple(round(c * 255) / 255 for c in rgb)  # type: ignore[return-value]


def segment_color(nodes: LoadedNodes, roi: LesionROI) -> tuple[float, float, float]:
    """Colour of a ROI: by category (default) or by track; rejected ROIs are grey."""
    if roi.status == "rejected":
        return CATEGORY_COLORS["rejected"]
    if nodes.color_by == "track":
        track = track_of(nodes.analysis).get(roi.roi_id)
        return track_color(track) if track is not None else CATEGORY_COLORS["absent"]
    return CATEGORY_COLORS.get(nodes.roi_categories.get(roi.roi_id, ""), CATEGORY_COLORS["absent"])


def read_image(path: Path) -> Any:
    """A SimpleITK image of an analysis-folder file, or a :class:`SlicerLoadError` naming it."""
    import SimpleITK as sitk

    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise SlicerLoadError(describe(f"unreadable image ({error})", path=path,
                                       fix="Re-run the analysis to rewrite it.")) from error


def ijk_to_ras(image: Any) -> Any:
    """The ``vtkMatrix4x4`` mapping voxel (i, j, k) of a SimpleITK image to RAS (mm)."""
    import vtk

    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(ras[r, c]))
    return matrix


def set_volume_image(node: Any, image: Any, array: np.ndarray | None = None) -> None:
    """Put a SimpleITK image (geometry and voxels) into a volume node, keeping the node (views stay)."""
    import SimpleITK as sitk
    import vtk
    from vtk.util import numpy_support

    voxels = np.ascontiguousarray(sitk.GetArrayViewFromImage(image) if array is None else array)
    data = vtk.vtkImageData()
    data.SetDimensions(*image.GetSize())
    data.GetPointData().SetScalars(numpy_support.numpy_to_vtk(voxels.ravel(), deep=True))
    node.SetIJKToRASMatrix(ijk_to_ras(image))
    node.SetAndObserveImageData(data)


def add_volume(scene: Any, image: Any, name: str, labelmap: bool = False) -> Any:
    """A new scalar (or label map) volume node holding ``image``, with a display node.

    A scalar volume's display node starts grey with automatic window/level off (the caller sets the window:
    see ``_style_pet``/``_style_ct``): Slicer's default display node computes a histogram of every volume for
    its automatic window, ~50 ms per whole-body volume that the review would throw away."""
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", name)
    if labelmap:
        set_volume_image(node, image)
        node.CreateDefaultDisplayNodes()
        return node
    display = scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode", f"{name} display")
    display.AutoWindowLevelOff()
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    node.SetAndObserveDisplayNodeID(display.GetID())
    set_volume_image(node, image)
    return node


def image_files(out_dir: Path, tp: int) -> tuple[Path, Path]:
    """``suv/tp{k}.nii.gz`` and ``ct/tp{k}.nii.gz`` of an analysis folder."""
    return out_dir / "suv" / f"tp{tp}.nii.gz", out_dir / "ct" / f"tp{tp}.nii.gz"


def read_images(paths: Iterable[Path]) -> dict[Path, Any]:
    """SimpleITK images of the existing ``paths``, read in parallel (decompression releases the GIL)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    existing = [p for p in paths if p.is_file()]
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return dict(zip(existing, pool.map(read_image, existing), strict=True))


def analysis_image_files(out_dir: str | Path, n_timepoints: int | None = None) -> list[Path]:
    """Every PET (SUV) and CT file of an analysis folder that ``load_analysis_into_scene`` reads
    (``n_timepoints``: from ``analysis.json`` when not given)."""
    out = Path(out_dir)
    n = len(read_analysis(out).timepoints) if n_timepoints is None else n_timepoints
    return [p for tp in range(n) for p in image_files(out, tp)]


def prefetch_images(out_dir: str | Path) -> Any:
    """Start reading an analysis folder's PET and CT in a background thread; a ``Future`` of the
    :func:`read_images` dict to hand to ``load_analysis_into_scene(images=...)``.

    Started before the Slicer libraries are imported (seconds of loading shared objects), the reading runs
    on the other core meanwhile. A reading error is raised where the result is used."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch-images")
    future = pool.submit(lambda: read_images(analysis_image_files(out_dir)))
    pool.shutdown(wait=False)
    return future


def load_images(scene: Any, out_dir: Path, analysis: Analysis, tp: int,
                read: dict[Path, Any] | None = None) -> tuple[Any, Any | None]:
    """PET (SUV) and CT volume nodes of time point ``tp``: ``suv/``, ``ct/`` files if written (``read``: those
    already read), else DICOM."""
    suv_file, ct_file = image_files(out_dir, tp)
    read = read or {}
    if suv_file.is_file():
        pet = add_volume(scene, read.get(suv_file) or read_image(suv_file), f"PET SUV tp{tp}")
        ct = (add_volume(scene, read.get(ct_file) or read_image(ct_file), f"CT tp{tp}")
              if ct_file.is_file() else None)
        if ct is not None or not analysis.timepoints[tp].ct_files:
            return pet, ct
        scene.RemoveNode(pet)
    from LesionResponseLib.dicomio import load_timepoint

    loaded = load_timepoint(analysis.timepoints[tp])  # an older analysis folder: no ct/ yet
    pet = add_volume(scene, loaded.pet_suv, f"PET SUV tp{tp}")
    ct = add_volume(scene, loaded.ct, f"CT tp{tp}") if loaded.ct is not None else None
    return pet, ct


def _style_pet(pet: Any, window: tuple[float, float] = PET_SUV_WINDOW) -> None:
    display = pet.GetDisplayNode()
    scene = pet.GetScene()
    for color_id in ("vtkMRMLPETProceduralColorNodePET-Heat", "vtkMRMLColorTableNodeInferno"):
        if scene.GetNodeByID(color_id):
            display.SetAndObserveColorNodeID(color_id)
            break
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(*window)
    display.SetLowerThreshold(PET_TRANSPARENT_BELOW)  # below: transparent, the CT shows through unblended
    display.SetUpperThreshold(1e9)
    display.ApplyThresholdOn()


def _style_ct(ct: Any, window: tuple[float, float] = CT_WINDOW) -> None:
    display = ct.GetDisplayNode()
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(*window)


def load_labels(nodes: LoadedNodes, tp: int, image: Any = None) -> Any:
    """Label map node of time point ``tp`` from ``labels/tp{tp}.nii.gz`` or from ``image`` (SimpleITK);
    an existing node is refilled in place and left alone when its voxels did not change."""
    import SimpleITK as sitk

    if image is None:
        path = nodes.out_dir / "labels" / f"tp{tp}.nii.gz"
        if not path.is_file():
            raise SlicerLoadError(describe(f"label map of time point {tp} missing", path=path,
                                           fix="Re-run the analysis; it writes labels/tp{k}.nii.gz."))
        image = read_image(path)
    array = sitk.GetArrayFromImage(image)
    node = nodes.labels.get(tp)
    if node is None:
        node = add_volume(nodes.scene, image, f"Lesion-ROIs tp{tp}", labelmap=True)
        nodes.labels[tp] = node
    elif tp not in nodes.label_arrays or not np.array_equal(nodes.label_arrays[tp], array):
        set_volume_image(node, image, array)
    nodes.label_arrays[tp] = array
    return node


def refresh_colors(nodes: LoadedNodes) -> None:
    """Rebuild each time point's colour table: label value -> ROI name and colour (selected track opaque)."""
    current = track_of(nodes.analysis)
    nodes.last_track.update(current)  # a rejected ROI keeps the last track id it had, so the reader finds it
    by_tp: dict[int, list[LesionROI]] = {}
    for roi in nodes.analysis.rois:
        by_tp.setdefault(roi.timepoint, []).append(roi)
    for tp, label_node in nodes.labels.items():
        rois = by_tp.get(tp, [])
        highest = max([int(nodes.label_arrays[tp].max())] + [r.label for r in rois])
        table = nodes.colors.get(tp)
        if table is None:
            table = nodes.scene.AddNewNodeByClass("vtkMRMLColorTableNode", f"Lesion-ROI colours tp{tp}")
            table.SetTypeToUser()
            table.SetAttribute("Category", "LesionResponse")
            nodes.colors[tp] = table
        table.SetNumberOfColors(highest + 1)
        table.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
        for label in range(1, highest + 1):
            table.SetColor(label, "", *CATEGORY_COLORS["absent"], 0.0)  # a label without ROI: hidden
        for roi in rois:
            track = current.get(roi.roi_id, nodes.last_track.get(roi.roi_id) if roi.status == "rejected" else None)
            selected = nodes.selected_track is None or track == nodes.selected_track
            alpha = 1.0 if selected else UNSELECTED_ALPHA
            table.SetColor(roi.label, segment_name(roi, track, nodes.roi_categories.get(roi.roi_id, "")),
                           *segment_color(nodes, roi), alpha)
        table.Modified()
        display = label_node.GetDisplayNode()
        if display.GetColorNodeID() != table.GetID():  # assigned once filled (an empty table is an error)
            display.SetAndObserveColorNodeID(table.GetID())


def roi_display(nodes: LoadedNodes, roi_id: str) -> tuple[str, tuple[float, float, float], float]:
    """(name, RGB, alpha) a ROI is drawn with (read back from its time point's colour table)."""
    roi = nodes.analysis.roi(roi_id)
    table = nodes.colors[roi.timepoint]
    rgba = [0.0, 0.0, 0.0, 0.0]
    table.GetColor(roi.label, rgba)
    return table.GetColorName(roi.label), (rgba[0], rgba[1], rgba[2]), rgba[3]


def roi_sources(analysis: Analysis, track: Any, rois_by_id: dict[str, LesionROI] | None = None,
                by_model: set[str] | None = None) -> dict[int, str]:
    """Time point -> how the track's ROIs there were found (``LesionROI.source``: ``model``, ``prior-guided``
    — "prior-guided (model evidence)" when the search accepted it on the model's probability —, ``reader``;
    several joined by ``+``), for the time points where the track has ROIs. ``rois_by_id`` and ``by_model``
    (``Analysis.model_evidence_rois``): given when the caller asks for many tracks (built here otherwise)."""
    by_id = rois_by_id if rois_by_id is not None else {r.roi_id: r for r in analysis.rois}
    by_model = by_model if by_model is not None else analysis.model_evidence_rois()
    sources: dict[int, str] = {}
    for tp, ids in track.rois.items():
        found = sorted({by_id[rid].source + (" (model evidence)" if rid in by_model else "")
                        for rid in ids if rid in by_id})
        if found:
            sources[int(tp)] = "+".join(found)
    return sources


def checked_timepoints(analysis: Analysis, track: Any, rois_by_id: dict[str, LesionROI] | None = None,
                       by_model: set[str] | None = None) -> str:
    """``"T2 T3"``: the time points where the track holds a ROI not found by the model (prior-guided search or
    reader): the ones the reader should look at."""
    sources = roi_sources(analysis, track, rois_by_id, by_model)
    return " ".join(f"T{tp}" for tp, src in sorted(sources.items()) if src != "model")


def queue_order(analysis: Analysis) -> list[int]:
    """Track ids in review-queue order (``analysis.queue``: unreviewed first, likeliest errors first)."""
    from LesionResponseLib.analysis.queue import review_queue

    return [item.track_id for item in review_queue(analysis)]


def next_unreviewed(analysis: Analysis, current: int | None) -> int | None:
    """The first unreviewed track after ``current`` in queue order (wrapping; from the top when ``current`` is
    not in the queue), or None when every track is reviewed."""
    from LesionResponseLib.analysis.queue import review_queue

    left = [item.track_id for item in review_queue(analysis) if not item.reviewed]
    if not left:
        return None
    order = queue_order(analysis)
    if current not in order:
        return left[0]
    start = order.index(current)
    return next(t for t in order[start + 1:] + order[:start + 1] if t in left)


def queue_summary(analysis: Analysis) -> str:
    """What is left of the review queue: ``3 of 12 tracks left to review`` (or that none is)."""
    from LesionResponseLib.analysis.queue import review_queue

    items = review_queue(analysis)
    left = sum(not item.reviewed for item in items)
    return f"{left} of {len(items)} tracks left to review" if left else f"all {len(items)} tracks reviewed"


def track_rows(analysis: Analysis) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the track table in review-queue order (the ``tracks.csv`` columns plus ``n_rois``, the ROI
    ids, ``not_model``: time points whose ROI the prior-guided search or the reader added, the queue's rank, score,
    reviewed flag and reasons, and the follow-ups whose category is indeterminate), from the analysis in memory, so
    that it is current after every edit."""
    from LesionResponseLib.analysis.queue import review_queue

    followups = range(1, len(analysis.timepoints))
    columns = ["track_id", "first_timepoint", "last_timepoint", "pattern"]
    columns += [c for k in followups for c in (f"category_t{k}", f"delta_suv_total_pct_t{k}")]
    columns += ["n_rois", "rois", "not_model", "queue_rank", "review_score", "reviewed", "review_reasons",
                "indeterminate"]
    responses = {r.track_id: r for r in analysis.responses}
    rois_by_id = {r.roi_id: r for r in analysis.rois}  # once per table, not per track (refreshed on every edit)
    by_model = analysis.model_evidence_rois()
    queue = {item.track_id: (rank, item) for rank, item in enumerate(review_queue(analysis), start=1)}
    unqueued = (len(queue) + 1, None)  # a track without response (all its ROIs rejected) comes last
    rows = []
    for track in sorted(analysis.tracks, key=lambda t: (queue.get(t.track_id, unqueued)[0], t.track_id)):
        response = responses.get(track.track_id)
        ids = [rid for tp in sorted(track.rois) for rid in track.rois[tp]]
        row: dict[str, Any] = {"track_id": track.track_id, "first_timepoint": track.first_timepoint,
                               "last_timepoint": track.last_timepoint, "pattern": response.pattern if response else "",
                               "n_rois": len(ids), "rois": " ".join(ids),
                               "not_model": checked_timepoints(analysis, track, rois_by_id, by_model)}
        for k in followups:
            delta = response.delta_suv_total_pct.get(k) if response else None
            row[f"category_t{k}"] = response.categories.get(k, "") if response else ""
            row[f"delta_suv_total_pct_t{k}"] = "" if delta is None else f"{delta:.1f}"
        rank, item = queue.get(track.track_id, unqueued)
        row.update({"queue_rank": rank, "review_score": f"{item.score:.2f}" if item else "",
                    "reviewed": "yes" if item and item.reviewed else "",
                    "review_reasons": "; ".join(item.reasons) if item else "",
                    "indeterminate": " ".join(f"T{k}" for k, flag in sorted(response.indeterminate.items()) if flag)
                    if response else ""})
        rows.append(row)
    return columns, rows


def refresh_table(nodes: LoadedNodes) -> Any:
    """Fill (or create) the table node of tracks, one row per track (ids and counts as integers)."""
    import vtk

    columns, rows = track_rows(nodes.analysis)
    if nodes.table is None:
        nodes.table = nodes.scene.AddNewNodeByClass("vtkMRMLTableNode", "LesionResponse tracks")
    table = nodes.table.GetTable()
    table.Initialize()
    integers = {"track_id", "first_timepoint", "last_timepoint", "n_rois", "queue_rank"}
    for name in columns:
        array = vtk.vtkIntArray() if name in integers else vtk.vtkStringArray()
        array.SetName(name)
        for row in rows:
            array.InsertNextValue(int(row[name]) if name in integers else str(row[name]))
        table.AddColumn(array)
    nodes.table.Modified()
    return nodes.table


def load_transforms(nodes: LoadedNodes, scene: Any = None) -> None:
    """Transform nodes of the registrations (see the module docstring for the direction), into ``scene``
    (default: the nodes' scene)."""
    scene = scene if scene is not None else nodes.scene
    for reg in nodes.analysis.registrations:
        path = nodes.out_dir / reg.transform_path
        if not path.is_file():
            continue
        storage = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
        storage.SetFileName(str(path))
        node = scene.AddNewNodeByClass("vtkMRMLTransformNode",
                                             f"tp{reg.fixed_timepoint} to tp{reg.moving_timepoint}")
        if not storage.ReadData(node):
            raise SlicerLoadError(describe("Slicer could not read this ITK transform", path=path,
                                           fix="Re-run the analysis to rewrite transforms/."))
        node.SetAndObserveStorageNodeID(storage.GetID())
        nodes.transforms[(reg.fixed_timepoint, reg.moving_timepoint)] = node


def load_analysis_into_scene(scene: Any, out_dir: str | Path, load_volumes: bool = True,
                             progress: Callable[[str, float], None] | None = None,
                             images: dict[Path, Any] | None = None) -> LoadedNodes:
    """Turn an analysis output folder into nodes: per time point PET (SUV), CT, label map + colour table;
    tracks table; registration transforms. ``progress(message, fraction)`` is called between steps;
    ``images``: the folder's PET/CT already read (:func:`read_images`, :func:`prefetch_images`), consumed:
    each entry is removed once its node holds the voxels, so no second copy stays in memory."""
    out = Path(out_dir)
    nodes = LoadedNodes(out_dir=out, analysis=read_analysis(out), scene=scene)
    n = len(nodes.analysis.timepoints)
    read: dict[Path, Any] = {}
    if load_volumes:
        read = images if images is not None else read_images(analysis_image_files(out, n))
    for tp in range(n):
        if progress:
            progress(f"Loading time point {tp}", tp / max(n, 1))
        if load_volumes:
            nodes.pet[tp], ct = load_images(scene, out, nodes.analysis, tp, read)
            for path in image_files(out, tp):
                read.pop(path, None)  # the node holds the voxels now
            _style_pet(nodes.pet[tp])
            if ct is not None:
                nodes.ct[tp] = ct
                _style_ct(ct)
        load_labels(nodes, tp)
    nodes.roi_categories = roi_categories(nodes.analysis)
    refresh_colors(nodes)
    refresh_table(nodes)
    load_transforms(nodes)
    if progress:
        progress("Loaded", 1.0)
    return nodes


def image_stamps(nodes: LoadedNodes) -> dict[Path, int]:
    """Modification time (ns) of each PET and CT file the nodes were loaded from (``suv/``, ``ct/``): taken before a
    re-run of the analysis, it tells :func:`show_rerun` which images the re-run rewrote."""
    return {path: path.stat().st_mtime_ns for path in analysis_image_files(nodes.out_dir, len(nodes.pet))
            if path.is_file()}


def show_rerun(nodes: LoadedNodes, session: Any, before: dict[Path, int]) -> None:
    """Show a re-run of the analysis in the nodes already loaded (views, zoom and selection stay): the PET/CT images
    rewritten since ``before`` (:func:`image_stamps`), the registrations, and ``session``'s state (the new
    analysis with the reader's edits re-applied: label maps, colours, table, reference spheres)."""
    n = len(session.state.analysis.timepoints)
    if n != len(nodes.pet):
        raise SlicerLoadError(describe(f"the re-run found {n} time points instead of {len(nodes.pet)}",
                                       path=nodes.out_dir / "analysis.json", fix="Open the folder again to see them."))
    for tp in range(n):
        for path, node in zip(image_files(nodes.out_dir, tp), (nodes.pet.get(tp), nodes.ct.get(tp)), strict=True):
            if node is not None and path.is_file() and path.stat().st_mtime_ns != before.get(path):
                set_volume_image(node, read_image(path))
    for node in nodes.transforms.values():
        storage = node.GetStorageNode()
        nodes.scene.RemoveNode(node)
        if storage is not None:
            nodes.scene.RemoveNode(storage)
    nodes.transforms.clear()
    nodes.analysis = session.state.analysis
    load_transforms(nodes)
    sync_with_session(nodes, session)


# ----------------------------------------------------------------------------------------------- layout
def view_label(analysis: Analysis, tp: int) -> str:
    """Label of a time point's view: ``T1 2025-03-04`` (index and study date)."""
    date = analysis.timepoints[tp].study_date
    pretty = f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 and date.isdigit() else date
    return f"T{tp} {pretty}".strip()


def check_timepoints_shown(n: int) -> None:
    """Refuse layouts with more views than stay readable on one screen."""
    if not 1 <= n <= MAX_TIMEPOINTS_SHOWN:
        raise SlicerLoadError(describe(f"{n} time points cannot be shown side by side",
                                       fix=f"Show at most {MAX_TIMEPOINTS_SHOWN} time points."))


def layout_xml(n: int, tag_prefix: str = "LRtp", labels: Sequence[str] | None = None) -> str:
    """Slicer layout XML: one axial slice view per time point (rows of at most 4), view group = index."""
    check_timepoints_shown(n)

    def view(k: int) -> str:
        props = {"orientation": "Axial", "viewlabel": labels[k] if labels else f"T{k}", "viewcolor": "#5080c0",
                 "viewgroup": str(k)}
        body = "".join(f'<property name="{p}" action="default">{v}</property>' for p, v in props.items())
        return f'<item><view class="vtkMRMLSliceNode" singletontag="{tag_prefix}{k}">{body}</view></item>'

    rows = [list(range(i, min(i + 4, n))) for i in range(0, n, 4)]
    inner = "".join(f'<item><layout type="horizontal">{"".join(view(k) for k in row)}</layout></item>'
                    for row in rows)
    return f'<layout type="vertical" split="true">{inner}</layout>'


def composite_node(scene: Any, layout_name: str) -> Any:
    """The slice composite node of a view (created when the view has none yet)."""
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        if node.GetLayoutName() == layout_name:
            return node
    node = scene.CreateNodeByClass("vtkMRMLSliceCompositeNode")
    node.SetLayoutName(layout_name)
    node.SetSingletonTag(layout_name)
    return scene.AddNode(node)


def attach_views(nodes: LoadedNodes, slice_nodes: dict[int, Any]) -> dict[int, Any]:
    """Show each time point in its own slice view: CT background, PET fused, ROI outlines in the label layer."""
    nodes.slice_nodes = dict(slice_nodes)
    for tp, slice_node in nodes.slice_nodes.items():
        composite = composite_node(nodes.scene, slice_node.GetLayoutName())
        ct, pet = nodes.ct.get(tp), nodes.pet.get(tp)
        composite.SetBackgroundVolumeID((ct or pet).GetID() if (ct or pet) else None)
        composite.SetForegroundVolumeID(pet.GetID() if (pet and ct) else None)
        composite.SetForegroundOpacity(PET_OPACITY)
        composite.SetLabelVolumeID(nodes.labels[tp].GetID() if tp in nodes.labels else None)
        composite.SetLabelOpacity(1.0)
        slice_node.SetUseLabelOutline(True)
    show_reference_regions(nodes)
    return nodes.slice_nodes


def show_reference_regions(nodes: LoadedNodes) -> None:
    """Outline each placed reference sphere (liver, spleen) in its own time point's view: a sphere model whose cut
    with the slice is drawn in :data:`REFERENCE_COLOUR`. Redrawn from ``nodes.analysis`` (after every edit)."""
    import vtk

    for model in nodes.reference_models.values():
        nodes.scene.RemoveNode(model)
    nodes.reference_models = {}
    for region in nodes.analysis.reference_regions:
        slice_node = nodes.slice_nodes.get(region.timepoint)
        if not region.placed or slice_node is None:
            continue
        sphere = vtk.vtkSphereSource()
        sphere.SetCenter(*lps_to_ras(region.centre_mm))
        sphere.SetRadius(region.diameter_mm / 2.0)
        sphere.SetThetaResolution(48)
        sphere.SetPhiResolution(24)
        sphere.Update()
        model = nodes.scene.AddNewNodeByClass("vtkMRMLModelNode", f"{region.organ} reference tp{region.timepoint}")
        model.SetAndObservePolyData(sphere.GetOutput())
        model.CreateDefaultDisplayNodes()
        display = model.GetDisplayNode()
        display.SetColor(*REFERENCE_COLOUR)
        display.SetVisibility2D(True)
        display.SetSliceIntersectionThickness(2)
        display.AddViewNodeID(slice_node.GetID())  # only in that time point's view
        nodes.reference_models[(region.timepoint, region.organ)] = model


def setup_timepoint_layout(nodes: LoadedNodes, layout_node: Any) -> dict[int, Any]:
    """Desktop Slicer: switch the layout node to one view per time point and attach the volumes."""
    n = len(nodes.analysis.timepoints)
    xml = layout_xml(n, labels=[view_label(nodes.analysis, k) for k in range(n)])
    if layout_node.IsLayoutDescription(LAYOUT_ID):
        layout_node.SetLayoutDescription(LAYOUT_ID, xml)
    else:
        layout_node.AddLayoutDescription(LAYOUT_ID, xml)
    layout_node.SetViewArrangement(LAYOUT_ID)
    scene = layout_node.GetScene()
    slice_nodes = {}
    for tp in range(n):
        slice_node = scene.GetNodeByID(f"vtkMRMLSliceNodeLRtp{tp}")
        if slice_node is None:
            raise SlicerLoadError(describe(f"Slicer created no view for time point {tp}",
                                           fix="Restart Slicer; the layout manager is not running."))
        slice_nodes[tp] = slice_node
    return attach_views(nodes, slice_nodes)


def set_orientation(nodes: LoadedNodes, orientation: str) -> None:
    """Axial, coronal or sagittal in every view, keeping each view's centre point."""
    if orientation not in ORIENTATIONS:
        raise SlicerLoadError(describe(f"unknown orientation {orientation!r}", fix=f"Use one of {ORIENTATIONS}."))
    for slice_node in nodes.slice_nodes.values():
        centre = slice_centre(slice_node)
        slice_node.SetOrientation(orientation)
        slice_node.JumpSliceByCentering(*centre)


def set_pet_window(nodes: LoadedNodes, low: float, high: float) -> None:
    """SUV display range of the fused PET in every view."""
    if not high > low:
        raise SlicerLoadError(describe(f"SUV window {low}-{high} is empty", fix="Give an upper SUV above the lower."))
    for pet in nodes.pet.values():
        pet.GetDisplayNode().SetWindowLevelMinMax(float(low), float(high))


def set_fusion_opacity(nodes: LoadedNodes, opacity: float) -> None:
    """PET opacity over the CT (0 = CT only, 1 = PET only) in every view."""
    for slice_node in nodes.slice_nodes.values():
        composite_node(nodes.scene, slice_node.GetLayoutName()).SetForegroundOpacity(min(max(opacity, 0.0), 1.0))


def zoom_views(nodes: LoadedNodes, factor: float, only: Iterable[int] | None = None) -> None:
    """Zoom views by ``factor`` (> 1 = closer): the field of view is divided by it, the centre stays."""
    for tp, slice_node in nodes.slice_nodes.items():
        if only is None or tp in only:
            fov = slice_node.GetFieldOfView()
            slice_node.SetFieldOfView(fov[0] / factor, fov[1] / factor, fov[2])


# ------------------------------------------------------------------------------------ navigation
def slice_centre(slice_node: Any) -> tuple[float, float, float]:
    """RAS point (mm) at the centre of a slice view."""
    matrix = slice_node.GetSliceToRAS()
    return (matrix.GetElement(0, 3), matrix.GetElement(1, 3), matrix.GetElement(2, 3))


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
    rois = list(rois)
    kept = [r for r in rois if r.status == "accepted"] or rois
    if not kept:
        return None
    weight = sum(max(r.volume_ml, 1e-6) for r in kept)
    lps = [sum(r.centroid_mm[i] * max(r.volume_ml, 1e-6) for r in kept) / weight for i in range(3)]
    return lps_to_ras(lps)


def track_centres(nodes: LoadedNodes, track_id: int) -> dict[int, tuple[float, float, float]]:
    """RAS centre of a track at every time point; absent time points mapped through the registration."""
    try:
        track = nodes.analysis.track(track_id)
    except KeyError:
        raise SlicerLoadError(describe(f"no track {track_id} in this analysis", fix="Choose a track of the table.")
                              ) from None
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


def select_track(nodes: LoadedNodes, track_id: int | None) -> dict[int, tuple[float, float, float]]:
    """Highlight a track (its ROIs opaque, the others dimmed) and centre every view on it."""
    nodes.selected_track = track_id
    refresh_colors(nodes)
    return jump_to_track(nodes, track_id) if track_id is not None else {}


def follow_crosshair(nodes: LoadedNodes, ras: Sequence[float], src: int, move_source: bool = True
                     ) -> dict[int, tuple[float, float, float]]:
    """Move every view to the point corresponding to ``ras`` (a point in view ``src``), through the
    registrations; the source view is centred on ``ras`` itself unless ``move_source`` is False."""
    moved: dict[int, tuple[float, float, float]] = {}
    for tp, slice_node in nodes.slice_nodes.items():
        if tp == src and not move_source:
            continue
        point = map_point_between_timepoints(nodes, ras, src, tp)[0] if tp != src else tuple(ras)
        slice_node.JumpSliceByCentering(*point)
        moved[tp] = point  # type: ignore[assignment]
    return moved


class ViewLinker:
    """Keeps the views on corresponding points: when the reader moves one view (scroll, pan), every other view
    moves to the registered image of that view's centre. ``enabled`` can be switched off."""

    def __init__(self, nodes: LoadedNodes) -> None:
        self.nodes = nodes
        self.enabled = True
        self._busy = False
        self._centres: dict[int, tuple[float, float, float]] = {}
        self._tags: list[tuple[Any, int]] = []
        import vtk

        for tp, slice_node in nodes.slice_nodes.items():
            self._centres[tp] = slice_centre(slice_node)
            tag = slice_node.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event, k=tp: self._moved(k))
            self._tags.append((slice_node, tag))

    def quietly(self, action: Callable[[], Any]) -> Any:
        """Run ``action`` (which moves views itself, e.g. a jump) without the views following each other."""
        self._busy = True
        try:
            return action()
        finally:
            self._busy = False
            self._centres = {tp: slice_centre(n) for tp, n in self.nodes.slice_nodes.items()}

    def _moved(self, src: int) -> None:
        if self._busy or not self.enabled:
            return
        centre = slice_centre(self.nodes.slice_nodes[src])
        if np.allclose(centre, self._centres.get(src, centre), atol=1e-3) and src in self._centres:
            return
        self.quietly(lambda: self._follow(centre, src))

    def _follow(self, centre: tuple[float, float, float], src: int) -> None:
        for tp, slice_node in self.nodes.slice_nodes.items():
            if tp != src:
                slice_node.JumpSliceByCentering(*map_point_between_timepoints(self.nodes, centre, src, tp)[0])

    def close(self) -> None:
        """Stop observing the views."""
        for node, tag in self._tags:
            node.RemoveObserver(tag)
        self._tags = []


def track_ids(nodes: LoadedNodes) -> list[int]:
    """Track ids in table order (for next/previous keys)."""
    return sorted(t.track_id for t in nodes.analysis.tracks)


def step_track(nodes: LoadedNodes, current: int | None, step: int, order: Sequence[int] | None = None) -> int:
    """The track ``step`` places after ``current`` in ``order`` (default: by id; wrapping); the first one when
    ``current`` is not in it."""
    ids = list(order) if order is not None else track_ids(nodes)
    if not ids:
        raise SlicerLoadError(describe("the analysis has no tracks", fix="Add a lesion-ROI or re-run."))
    if current not in ids:
        return ids[0]
    return ids[(ids.index(current) + step) % len(ids)]


def ras_to_index(node: Any, ras: Sequence[float]) -> tuple[int, int, int]:
    """Voxel (i, j, k) of a volume node nearest to a RAS point (mm)."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetRASToIJKMatrix(matrix)
    ijk = matrix.MultiplyPoint((float(ras[0]), float(ras[1]), float(ras[2]), 1.0))
    return tuple(int(round(c)) for c in ijk[:3])  # type: ignore[return-value]


def roi_at_point(nodes: LoadedNodes, tp: int, ras: Sequence[float]) -> str | None:
    """The ROI id of time point ``tp`` under a RAS point, or None (background, outside the image)."""
    i, j, k = ras_to_index(nodes.labels[tp], ras)
    array = nodes.label_arrays[tp]
    if not (0 <= k < array.shape[0] and 0 <= j < array.shape[1] and 0 <= i < array.shape[2]):
        return None
    label = int(array[k, j, i])
    return next((r.roi_id for r in nodes.analysis.rois if r.timepoint == tp and r.label == label), None) if label else None


# ------------------------------------------------------------------------------------------- review
def apply_review_edit(nodes: LoadedNodes, session: Any, edit: Any) -> dict[str, Any]:
    """Apply one reader edit (a :mod:`LesionResponseLib.review.edits` object) through a
    :class:`LesionResponseLib.review.ReviewSession` (which saves it at once), then bring the nodes in line: label
    maps that changed, colours, table. Returns the edit's record."""
    record = session.apply(edit)
    sync_with_session(nodes, session)
    return record


def undo_review_edit(nodes: LoadedNodes, session: Any) -> dict[str, Any]:
    """Undo the session's last edit and show the result; returns the undone edit's record."""
    record = session.undo()
    sync_with_session(nodes, session)
    return record


def redo_review_edit(nodes: LoadedNodes, session: Any) -> dict[str, Any]:
    """Redo the session's last undone edit and show the result; returns its record."""
    record = session.redo()
    sync_with_session(nodes, session)
    return record


def sync_with_session(nodes: LoadedNodes, session: Any) -> None:
    """Show a review session's current state (its analysis and in-memory label maps) in the nodes."""
    state = session.state
    nodes.analysis = state.analysis
    refresh_after_edit(nodes, reload_labels=True, labels=state.labels)


def refresh_after_edit(nodes: LoadedNodes, reload_labels: bool = False, labels: dict[int, Any] | None = None) -> None:
    """Bring label maps, colours and the table in line with ``nodes.analysis`` (categories recomputed).

    ``reload_labels``: refill the label maps, from ``labels`` (time point -> SimpleITK image, e.g. the review
    session's in-memory maps) when given, else from ``labels/tp{k}.nii.gz``; unchanged maps are not touched.
    """
    if reload_labels:
        for tp in list(nodes.labels):
            load_labels(nodes, tp, image=(labels or {}).get(tp))
    nodes.roi_categories = roi_categories(nodes.analysis)
    refresh_colors(nodes)
    refresh_table(nodes)
    show_reference_regions(nodes)  # a moved sphere is redrawn


def roi_id_from_text(text: str, what: str = "a ROI id") -> str:
    """A ROI id typed or clicked into a panel field (``what`` names the field in the error)."""
    if not text.strip():
        raise SlicerLoadError(describe(f"this edit needs {what}",
                                       fix="Click a lesion-ROI in a view or type its id (e.g. tp1-L0003)."))
    return text.strip()


def number_from_text(text: str, what: str = "a track id") -> int:
    """A track id (``12``, ``T012``) or time point typed into a panel field."""
    try:
        return int(text.strip().lstrip("Tt"))
    except ValueError:
        raise SlicerLoadError(describe(f"this edit needs {what}, got {text!r}",
                                       fix="Type a number (e.g. 12 or T012).")) from None


def segmentation_for_editing(nodes: LoadedNodes, tp: int, segmentations_logic: Any) -> Any:
    """A segmentation node of time point ``tp`` (one segment per ROI, tagged with its ROI id, coloured as in the
    views) for desktop Segment Editor work; refilled from the current label map on every call."""
    seg = nodes.segmentations.get(tp)
    if seg is None:
        seg = nodes.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"Lesion-ROIs tp{tp} (editing)")
        seg.CreateDefaultDisplayNodes()
        nodes.segmentations[tp] = seg
    seg.GetSegmentation().RemoveAllSegments()
    if not segmentations_logic.ImportLabelmapToSegmentationNode(nodes.labels[tp], seg):
        raise SlicerLoadError(describe("Slicer could not import the label map", path=nodes.out_dir / "labels",
                                       fix="Check that it is an integer label image."))
    by_label = {r.label: r for r in nodes.analysis.rois if r.timepoint == tp}
    segmentation = seg.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(i)
        roi = by_label.get(segment.GetLabelValue())
        if roi is not None:
            name, rgb, _alpha = roi_display(nodes, roi.roi_id)
            segment.SetTag(ROI_ID_TAG, roi.roi_id)
            segment.SetName(name)
            segment.SetColor(*rgb)
    return seg


def export_results(out_dir: str | Path, folder: str | Path, formats: Sequence[str] = ("html", "pdf"),
                   pacs: tuple[str, int, str] | None = None) -> list[Path]:
    """Write the patient report (``formats``) and one DICOM SEG + SR per time point into ``folder``/``dicom``;
    send the DICOM files to ``pacs`` = (host, port, called AE title) when given."""
    from LesionResponseLib.report import export_dicom, send_to_pacs, write_patient_report

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    reports = write_patient_report(out_dir, report_dir=target, formats=tuple(formats))
    dicom = [Path(p) for p in export_dicom(out_dir, target / "dicom")]
    if pacs is not None:
        host, port, called_aet = pacs
        send_to_pacs(dicom, host, port, called_aet=called_aet)
    return [Path(p) for p in reports.values()] + dicom
