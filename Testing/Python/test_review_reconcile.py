"""Re-identification of a ROI after a re-run (fingerprint -> ROI by Dice, or by centroid on another grid)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from LesionResponseLib.datamodel import Analysis, LesionROI, TimePointInfo
from LesionResponseLib.review import find_roi
from LesionResponseLib.review.state import ReviewState, roi_fingerprint, runs_to_indices


def _state(array: np.ndarray, spacing: float = 4.0) -> ReviewState:
    image = sitk.GetImageFromArray(array.astype(np.uint16))
    image.SetSpacing((spacing,) * 3)
    rois = []
    for label in np.unique(array[array > 0]):
        idx = np.argwhere(array == label).mean(axis=0)[::-1]
        centroid = image.TransformContinuousIndexToPhysicalPoint(tuple(float(c) for c in idx))
        n = int((array == label).sum())
        rois.append(LesionROI(f"tp0-L{int(label):04d}", 0, int(label), tuple(centroid), n * spacing**3 / 1000,
                              1, 1, 1, 1, n_voxels=n))
    info = TimePointInfo(0, "P", "20250101", "", "1", "2", None, None, 1.0, "GML")
    return ReviewState(Analysis("P", [info], rois), {0: image})


def _ball(shape, centre, radius) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def test_fingerprint_runs_round_trip_the_mask():
    array = np.zeros((20, 20, 20), np.uint16)
    array[_ball(array.shape, (10, 10, 10), 4)] = 3
    fp = roi_fingerprint(_state(array), "tp0-L0003")
    assert np.array_equal(runs_to_indices(fp["runs"]), np.flatnonzero(array.ravel() == 3))
    assert fp["volume_ml"] == (array == 3).sum() * 64 / 1000


def test_a_resegmented_roi_is_found_and_a_neighbour_is_not():
    old = np.zeros((30, 30, 30), np.uint16)
    old[_ball(old.shape, (15, 15, 10), 4)] = 1
    fp = roi_fingerprint(_state(old), "tp0-L0001")
    new = np.zeros_like(old)
    new[ndimage.binary_dilation(old == 1)] = 9  # a re-run draws it one voxel larger and numbers it 9
    new[_ball(old.shape, (15, 15, 22), 3)] = 4  # an unrelated lesion
    assert find_roi(_state(new), fp) == "tp0-L0009"
    moved = np.zeros_like(old)
    moved[_ball(old.shape, (15, 15, 16), 4)] = 2  # 6 voxels away: overlap far below Dice 0.5
    assert find_roi(_state(moved), fp) is None


def test_on_another_grid_the_nearest_centroid_of_similar_volume_is_taken():
    old = np.zeros((30, 30, 30), np.uint16)
    old[_ball(old.shape, (15, 15, 10), 4)] = 1
    fp = roi_fingerprint(_state(old), "tp0-L0001")
    fine = np.zeros((60, 60, 60), np.uint16)  # 2 mm grid: same physical ball, new numbering
    fine[_ball(fine.shape, (30, 30, 20), 8)] = 5
    fine[_ball(fine.shape, (30, 30, 50), 8)] = 6
    assert find_roi(_state(fine, spacing=2.0), fp) == "tp0-L0005"
    tiny = np.zeros((60, 60, 60), np.uint16)
    tiny[_ball(tiny.shape, (30, 30, 20), 2)] = 7  # same place, 1/64 of the volume: not the same ROI
    assert find_roi(_state(tiny, spacing=2.0), fp) is None
