"""A site's reference contours onto the PET grid of a time point: DICOM RTSTRUCT, DICOM SEG and NIfTI label maps.

**Which time point.** A DICOM object goes to the time point whose PET or CT series it references
(RTSTRUCT: ``ReferencedFrameOfReferenceSequence`` > ``RTReferencedStudySequence`` > ``RTReferencedSeriesSequence``;
SEG: ``ReferencedSeriesSequence``, or the source images of its frames), else to the one sharing its frame of
reference (``FrameOfReferenceUID``: PET and CT of one PET/CT study share it, DICOM PS3.3 C.7.4.1), else to the one
of its study (``StudyInstanceUID``). A NIfTI/NRRD label map carries no UIDs: its time point is given
(``timepoint``), or read from a ``tp{k}`` in its file name, or the analysis has one time point. Anything that
references no loaded time point is refused with the UIDs it references and those loaded.

**Onto the PET grid (the partial-voxel rule).** Each PET voxel is sampled at 4 x 4 x 4 points (:data:`SUBSAMPLE`,
centres of a regular sub-grid); the fraction of points inside the structure is its coverage, and the voxel belongs
to the structure when the coverage is at least 1/2 - the rule of the phantom's ground truth
(``phantom.simulate``: PET voxels more than half covered by lesion), so a reference and the truth are drawn alike.
A structure that covers half of no voxel (smaller than one PET voxel) keeps its most-covered voxel, as the
phantom's tiny lesions do. Inside means: for RTSTRUCT, within the closed planar contours of the contour plane
nearest to the point (each contour stands for the slab half-way to its neighbours, and half a contour spacing
beyond the first and last), several contours on one plane combined by the even-odd rule (an inner contour is a
hole, as DICOM RT and the planning systems draw them); for SEG and label maps, the voxel of the source grid holding
the point (nearest neighbour; a FRACTIONAL SEG is read at >= 1/2).

No maintained Python library does this without heavy dependencies: ``rt-utils`` needs OpenCV and rasterises only
onto the DICOM series the structure set references (not onto the PET grid of another series), ``highdicom`` has
no RTSTRUCT reader, ``platipy`` pulls a whole toolkit; so polygons are tested with ``matplotlib.path`` (a
dependency already) and SEG is read with ``highdicom``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.datamodel import TimePointInfo
from LesionResponseLib.errors import LesionResponseError, describe

SUBSAMPLE = 8  # sub-points per PET voxel edge: coverage in steps of 1/512
MIN_COVERAGE = 0.5  # a PET voxel belongs to a structure covering at least this share of it (module docstring)
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
#: RTSTRUCT structures that are not lesions (RT ROI Interpreted Type, DICOM PS3.3 C.8.8.8): skipped, and listed.
NOT_LESION_TYPES = frozenset({"EXTERNAL", "ORGAN", "AVOIDANCE", "SUPPORT", "FIXATION", "BOLUS", "MARKER",
                              "REGISTRATION", "ISOCENTER", "CAVITY", "CONTRAST_AGENT", "CONTROL", "DOSE_REGION"})
PLANE_TOLERANCE_MM = 0.01  # the points of one planar contour share their z within DICOM's decimal-string rounding


class ContourError(LesionResponseError):
    """Reference contours that cannot be used: unreadable, referencing no loaded time point, not planar axial."""


@dataclass
class ReferenceStructure:
    """One reference structure on a time point's PET grid: ``mask`` uint8 (0/1), its ``name`` (ROI name, segment
    label or ``label N``), the ``number`` it had in its file, and the file."""

    name: str
    timepoint: int
    mask: sitk.Image
    source: str
    number: int


@dataclass
class ReferenceSet:
    """What was read: the structures, the ones left out with the reason (never dropped silently), and the time
    points the files cover (a file with no lesion still says its time point was contoured)."""

    structures: list[ReferenceStructure] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    covered: set[int] = field(default_factory=set)


def read_reference(paths: Iterable[str | Path], timepoints: Sequence[TimePointInfo], grid_of: Callable[[int], sitk.Image],
                   timepoint: int | None = None, names: str | None = None) -> ReferenceSet:
    """Every structure of the files (or folders of files) ``paths`` on the PET grid of its time point.

    ``grid_of(k)``: the PET image of time point ``k`` (its grid). ``timepoint``: the time point of label maps (and
    of DICOM objects that reference none loaded). ``names``: a regular expression; only structures whose name it
    matches (case-insensitive, anywhere) are read.
    """
    result = ReferenceSet()
    files = _files(paths)
    if not files:
        raise ContourError(describe("no reference file found", path=", ".join(str(p) for p in paths),
                                    fix="Give RTSTRUCT or SEG DICOM files, NIfTI/NRRD label maps, or folders of them."))
    wanted = re.compile(names, re.IGNORECASE) if names else None
    for path in files:
        dataset = _dicom(path)
        if dataset is None:
            k = _label_map_timepoint(path, timepoints, timepoint)
            found = read_label_map(path, k, grid_of(k))
        elif dataset.SOPClassUID == RTSTRUCT_SOP_CLASS:
            k = match_timepoint(path, _rtstruct_uids(dataset), timepoints, timepoint)
            found = read_rtstruct(dataset, path, k, grid_of(k), result.skipped)
        elif dataset.SOPClassUID == SEG_SOP_CLASS:
            k = match_timepoint(path, _seg_uids(dataset), timepoints, timepoint)
            found = read_seg(path, k, grid_of(k))
        else:
            result.skipped.append({"file": str(path), "name": "", "reason": f"DICOM {dataset.get('Modality', '?')} "
                                   "object, neither RTSTRUCT nor SEG"})
            continue
        result.covered.add(k)
        for structure in found:
            if wanted is not None and not wanted.search(structure.name):
                result.skipped.append({"file": str(path), "name": structure.name,
                                       "reason": f"name does not match {names!r}"})
            else:
                result.structures.append(structure)
    return result


def _files(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for path in (Path(p) for p in paths):
        if not path.exists():
            raise ContourError(describe("reference file not found", path=path, fix="Check the path."))
        out += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return out


def _dicom(path: Path):
    """The dataset of a DICOM file (None for a label-map file)."""
    import pydicom

    if path.name.lower().endswith(LABEL_MAP_SUFFIXES):
        return None
    try:
        return pydicom.dcmread(path)
    except Exception as error:  # pydicom raises several types for a file that is not DICOM
        raise ContourError(describe(f"neither DICOM nor a label map ({type(error).__name__})", path=path,
                                    fix="Give RTSTRUCT/SEG DICOM files or NIfTI/NRRD label maps.")) from error


# ------------------------------------------------------------------------------------------------ time points
@dataclass
class ReferencedUids:
    """The UIDs a DICOM object points to (series, frame of reference, study)."""

    series: set[str]
    frames_of_reference: set[str]
    study: str | None


def _rtstruct_uids(ds) -> ReferencedUids:
    series, frames = set(), set()
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        frames.add(str(frame.FrameOfReferenceUID))
        for study in frame.get("RTReferencedStudySequence", []):
            series |= {str(s.SeriesInstanceUID) for s in study.get("RTReferencedSeriesSequence", [])}
    frames |= {str(roi.ReferencedFrameOfReferenceUID) for roi in ds.get("StructureSetROISequence", [])
               if "ReferencedFrameOfReferenceUID" in roi}
    return ReferencedUids(series, frames, str(ds.get("StudyInstanceUID", "")) or None)


def _seg_uids(ds) -> ReferencedUids:
    series = {str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", [])}
    frame = str(ds.get("FrameOfReferenceUID", ""))
    return ReferencedUids(series, {frame} if frame else set(), str(ds.get("StudyInstanceUID", "")) or None)


def match_timepoint(path: Path, uids: ReferencedUids, timepoints: Sequence[TimePointInfo],
                    timepoint: int | None = None) -> int:
    """The time point a DICOM object belongs to (module docstring), or a :class:`ContourError`."""
    rules = (("series", lambda tp: bool(uids.series & {tp.pet_series_instance_uid, tp.ct_series_instance_uid})),
             ("frame of reference", lambda tp: tp.frame_of_reference_uid in uids.frames_of_reference),
             ("study", lambda tp: uids.study is not None and tp.study_instance_uid == uids.study))
    for rule, matches in rules:
        found = [tp.index for tp in timepoints if matches(tp)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1 and timepoint in found:
            return int(timepoint)
        if len(found) > 1:
            raise ContourError(describe(f"its {rule} matches time points {found}", path=path,
                                        fix="Give the time point (--timepoint K)."))
    if timepoint is not None:
        return int(timepoint)
    loaded = "; ".join(f"tp{tp.index}: PET {tp.pet_series_instance_uid}, CT {tp.ct_series_instance_uid}, "
                       f"frame of reference {tp.frame_of_reference_uid}" for tp in timepoints)
    raise ContourError(describe(
        f"it references no time point of this analysis (series {sorted(uids.series) or 'none'}, frame of reference "
        f"{sorted(uids.frames_of_reference) or 'none'}, study {uids.study}; loaded: {loaded})", path=path,
        fix="Analyse the study these contours were drawn on, or give its time point (--timepoint K) when you know "
            "they were drawn on this patient's scan."))


def _label_map_timepoint(path: Path, timepoints: Sequence[TimePointInfo], timepoint: int | None) -> int:
    indices = [tp.index for tp in timepoints]
    if timepoint is not None:
        if timepoint not in indices:
            raise ContourError(describe(f"time point {timepoint} is not in this analysis ({indices})", path=path,
                                        fix="Give one of its time points."))
        return int(timepoint)
    named = re.search(r"tp(\d+)", path.name)
    if named and int(named.group(1)) in indices:
        return int(named.group(1))
    if len(indices) == 1:
        return indices[0]
    raise ContourError(describe("a label map carries no UIDs, and its name has no tp{k}", path=path,
                                fix="Name it tp{k}....nii.gz or give its time point (--timepoint K)."))


# ------------------------------------------------------------------------------------------------ rasterising
def _sub_grid(grid: sitk.Image, box: tuple[slice, slice, slice], z: int) -> sitk.Image:
    """The sub-points of PET slice ``z`` of ``box`` as an image grid: :data:`SUBSAMPLE` times finer along each axis,
    its first voxel centred on the first sub-point, the PET's direction."""
    fine = np.asarray(grid.GetSpacing()) / SUBSAMPLE
    first = (box[2].start - 0.5 + 0.5 / SUBSAMPLE, box[1].start - 0.5 + 0.5 / SUBSAMPLE, z - 0.5 + 0.5 / SUBSAMPLE)
    sub = sitk.Image([(box[2].stop - box[2].start) * SUBSAMPLE, (box[1].stop - box[1].start) * SUBSAMPLE, SUBSAMPLE],
                     sitk.sitkUInt8)
    sub.SetSpacing(tuple(float(v) for v in fine))
    sub.SetDirection(grid.GetDirection())
    sub.SetOrigin(grid.TransformContinuousIndexToPhysicalPoint(first))
    return sub


def _voxel_share(sub_mask: np.ndarray) -> np.ndarray:
    """(S, Y*S, X*S) sub-point hits of one PET slice -> the share of each PET voxel's sub-points (Y, X)."""
    _, ny, nx = sub_mask.shape
    return sub_mask.reshape(SUBSAMPLE, ny // SUBSAMPLE, SUBSAMPLE, nx // SUBSAMPLE, SUBSAMPLE).mean(axis=(0, 2, 4))


def _box_of(points: np.ndarray, grid: sitk.Image, pad: int = 1) -> tuple[slice, slice, slice] | None:
    """The voxels (z, y, x slices) of ``grid`` holding the physical ``points`` (N, 3), ``pad`` voxels wider."""
    index = np.array([grid.TransformPhysicalPointToContinuousIndex(tuple(float(c) for c in p))
                      for p in _corners(points)])
    low = np.maximum(np.floor(index.min(0) + 0.5).astype(int) - pad, 0)
    high = np.minimum(np.floor(index.max(0) + 0.5).astype(int) + pad + 1, grid.GetSize())
    if np.any(high <= low):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(low[::-1], high[::-1], strict=True))  # type: ignore[return-value]


def _corners(points: np.ndarray) -> list[np.ndarray]:
    low, high = points.min(0), points.max(0)
    return [np.array([(low, high)[i][0], (low, high)[j][1], (low, high)[k][2]])
            for i in (0, 1) for j in (0, 1) for k in (0, 1)]


def mask_from_coverage(coverage: np.ndarray, box: tuple[slice, slice, slice], grid: sitk.Image) -> sitk.Image | None:
    """The uint8 mask on ``grid`` of a coverage map over ``box`` (the rule of the module docstring); None when the
    structure covers nothing."""
    if coverage.size == 0 or coverage.max() <= 0:
        return None
    inside = coverage >= MIN_COVERAGE
    if not inside.any():  # smaller than a voxel: its most-covered voxel
        inside[np.unravel_index(int(np.argmax(coverage)), coverage.shape)] = True
    array = np.zeros(grid.GetSize()[::-1], np.uint8)
    array[box] = inside
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(grid)
    return mask


def _axial(grid: sitk.Image) -> bool:
    """Whether the grid's slices are axial planes (its third axis along the patient's z), as PET is stored."""
    return bool(np.allclose(np.abs(np.asarray(grid.GetDirection()).reshape(3, 3)[:, 2]), (0.0, 0.0, 1.0)))


def rasterise_planar_contours(contours: Sequence[np.ndarray], grid: sitk.Image, where: str = "") -> sitk.Image | None:
    """A uint8 mask on ``grid`` (axial slices) of closed planar axial contours (each (N, 3) LPS mm), by the rule of
    the module docstring; None when they cover no voxel of the grid."""
    from matplotlib.path import Path as Polygon

    if not _axial(grid):
        raise ContourError(describe("the PET is not stored in axial slices", path=where,
                                    fix="Resample the PET to axial slices, or give the reference as a SEG or label map."))
    planes: dict[float, list[np.ndarray]] = {}
    for contour in contours:
        if np.ptp(contour[:, 2]) > PLANE_TOLERANCE_MM:
            raise ContourError(describe("a contour is not in an axial plane (its z varies)", path=where,
                                        fix="Only axial planar contours (as drawn on CT or PET slices) are supported; "
                                            "export the structure as a DICOM SEG or label map instead."))
        planes.setdefault(round(float(contour[0, 2]), 3), []).append(contour[:, :2])
    levels = np.array(sorted(planes))
    gap = float(np.median(np.diff(levels))) if levels.size > 1 else float(grid.GetSpacing()[2])
    half = _half_slabs(levels, gap)
    box = _box_of(np.concatenate(contours), grid)
    if box is None:
        return None
    in_plane: dict[int, np.ndarray] = {}  # contour plane -> its even-odd inside map on the sub-point columns

    def plane_map(level_index: int, xy: np.ndarray) -> np.ndarray:
        if level_index not in in_plane:
            hits = np.zeros(len(xy), bool)
            for polygon in planes[float(levels[level_index])]:
                hits ^= Polygon(polygon).contains_points(xy)
            in_plane[level_index] = hits
        return in_plane[level_index]

    out = np.zeros(tuple(b.stop - b.start for b in box), np.float32)
    for i, z in enumerate(range(box[0].start, box[0].stop)):
        sub = _sub_grid(grid, box, z)
        nx, ny, nz = sub.GetSize()
        index = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), [0]), -1).reshape(-1, 3)  # (y, x) order, z = 0
        matrix = np.asarray(sub.GetDirection()).reshape(3, 3) * np.asarray(sub.GetSpacing())[None, :]
        xy = (index @ matrix.T + np.asarray(sub.GetOrigin()))[:, :2]  # axial: the same columns on every layer
        hits = np.zeros((nz, ny * nx), bool)
        for layer in range(nz):
            height = sub.TransformIndexToPhysicalPoint((0, 0, layer))[2]
            nearest = int(np.abs(levels - height).argmin())
            if abs(levels[nearest] - height) <= half[nearest] + 1e-6:
                hits[layer] = plane_map(nearest, xy)
        out[i] = _voxel_share(hits.reshape(nz, ny, nx))
    return mask_from_coverage(out, box, grid)


def _half_slabs(levels: np.ndarray, gap: float) -> np.ndarray:
    """Half the distance from each contour plane to the next one, on either side (half ``gap`` beyond the ends)."""
    before = np.diff(levels, prepend=levels[0] - gap)
    after = np.diff(levels, append=levels[-1] + gap)
    return np.maximum(before, after) / 2.0


def resample_mask(mask: sitk.Image, grid: sitk.Image) -> sitk.Image | None:
    """A mask on another grid onto ``grid`` by the rule of the module docstring (the source voxel holding each
    sub-point: nearest neighbour); on ``grid`` itself it is kept as it is. None when it covers no voxel of ``grid``."""
    from LesionResponseLib.imaging import same_grid

    binary = sitk.Cast(sitk.NotEqual(mask, 0), sitk.sitkUInt8)
    if same_grid(binary, grid):
        binary.CopyInformation(grid)
        return binary if sitk.GetArrayViewFromImage(binary).any() else None
    where = np.argwhere(sitk.GetArrayViewFromImage(binary) > 0)
    if where.size == 0:
        return None
    corners = [binary.TransformContinuousIndexToPhysicalPoint(tuple(float(c) for c in corner[::-1]))
               for corner in _corners(np.array([where.min(0) - 0.5, where.max(0) + 0.5]))]
    box = _box_of(np.array(corners), grid)
    if box is None:
        return None
    out = np.zeros(tuple(b.stop - b.start for b in box), np.float32)
    for i, z in enumerate(range(box[0].start, box[0].stop)):
        sampled = sitk.Resample(binary, _sub_grid(grid, box, z), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        out[i] = _voxel_share(sitk.GetArrayViewFromImage(sampled) > 0)
    return mask_from_coverage(out, box, grid)


# ------------------------------------------------------------------------------------------------ readers
def read_rtstruct(ds, path: Path, timepoint: int, grid: sitk.Image, skipped: list[dict[str, str]],
                  ) -> list[ReferenceStructure]:
    """The lesion structures of an RTSTRUCT dataset on ``grid`` (structures of a non-lesion RT ROI Interpreted Type,
    empty ones and those outside the PET go to ``skipped``)."""
    names = {int(roi.ROINumber): str(roi.get("ROIName", f"ROI {roi.ROINumber}"))
             for roi in ds.get("StructureSetROISequence", [])}
    kinds = {int(o.ReferencedROINumber): str(o.get("RTROIInterpretedType", "") or "")
             for o in ds.get("RTROIObservationsSequence", [])}
    structures = []
    for item in ds.get("ROIContourSequence", []):
        number = int(item.ReferencedROINumber)
        name = names.get(number, f"ROI {number}")
        if kinds.get(number, "").upper() in NOT_LESION_TYPES:
            skipped.append({"file": str(path), "name": name, "reason": f"RT ROI Interpreted Type {kinds[number]}"})
            continue
        contours = [np.asarray(c.ContourData, float).reshape(-1, 3) for c in item.get("ContourSequence", [])
                    if str(c.get("ContourGeometricType", "CLOSED_PLANAR")) == "CLOSED_PLANAR" and len(c.ContourData) >= 9]
        mask = rasterise_planar_contours(contours, grid, f"{path} ({name})") if contours else None
        if mask is None:
            skipped.append({"file": str(path), "name": name,
                            "reason": "no closed planar contour on the PET" if contours else "no closed planar contour"})
            continue
        structures.append(ReferenceStructure(name, timepoint, mask, str(path), number))
    return structures


def read_seg(path: Path, timepoint: int, grid: sitk.Image) -> list[ReferenceStructure]:
    """Every segment of a DICOM SEG on ``grid`` (highdicom reads the frames into a volume)."""
    import highdicom as hd

    try:
        seg = hd.seg.segread(path)
    except Exception as error:  # highdicom raises several types for a SEG it cannot read
        raise ContourError(describe(f"not a readable DICOM SEG ({error})", path=path,
                                    fix="Export the segmentation again as a DICOM SEG, or as a label map.")) from error
    structures = []
    for number in seg.segment_numbers:
        description = seg.get_segment_description(number)
        volume = seg.get_volume(segment_numbers=[number], combine_segments=True, rescale_fractional=True)
        image = volume.to_simpleitk()
        if image.GetNumberOfComponentsPerPixel() > 1:
            image = sitk.VectorIndexSelectionCast(image, 0)
        binary = sitk.Cast(image >= 0.5 if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64)
                           else image > 0, sitk.sitkUInt8)
        mask = resample_mask(binary, grid)
        if mask is not None:
            structures.append(ReferenceStructure(str(description.segment_label), timepoint, mask, str(path),
                                                 int(number)))
    return structures


def read_label_map(path: Path, timepoint: int, grid: sitk.Image) -> list[ReferenceStructure]:
    """Every label value of a label-map file on ``grid``, named ``label N``."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise ContourError(describe(f"not a readable image ({str(error).splitlines()[0]})", path=path,
                                    fix="Give a NIfTI or NRRD label map.")) from error
    array = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(array.dtype, np.integer) and not np.all(np.mod(array, 1) == 0):
        raise ContourError(describe("a label map must hold whole label values", path=path,
                                    fix="Save the reference as an integer label map (0 = background)."))
    structures = []
    for value in (int(v) for v in np.unique(array) if v > 0):
        mask = resample_mask(sitk.Cast(image == value, sitk.sitkUInt8), grid)
        if mask is not None:
            structures.append(ReferenceStructure(f"label {value}", timepoint, mask, str(path), value))
    return structures
