"""Headless Slicer (slicer-core): time to load an analysis into MRML nodes, switch layout and jump to tracks.

Run: ``.venv/bin/python benchmarks/bench_slicer_load.py`` (uses the cached 3-time-point phantom of the tests,
its truth label maps as lesion-ROIs). Prints seconds per step and per-track jump latency.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "Testing" / "Python"), str(REPO / "LesionResponse"), str(REPO)]


def main() -> None:
    import slicer_bootstrap
    from conftest import _phantom_dir
    from LesionResponseReview import mrml as lrm
    from test_slicer_mrml import build_truth_analysis

    phantom = _phantom_dir(1, 3, "siemens")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        build_truth_analysis(phantom, out)
        headless = slicer_bootstrap.new_scene()
        start = time.perf_counter()
        nodes = lrm.load_analysis_into_scene(headless.scene, out, load_volumes=False)
        seg_s = time.perf_counter() - start
        headless = slicer_bootstrap.new_scene()
        start = time.perf_counter()
        nodes = lrm.load_analysis_into_scene(headless.scene, out)
        full_s = time.perf_counter() - start
        start = time.perf_counter()
        lrm.setup_timepoint_layout(nodes, headless.logics["layout"].GetLayoutNode())
        layout_s = time.perf_counter() - start
        ids = lrm.track_ids(nodes)
        start = time.perf_counter()
        for track_id in ids:
            lrm.jump_to_track(nodes, track_id)
        jump_ms = (time.perf_counter() - start) / len(ids) * 1000
        start = time.perf_counter()
        lrm.refresh_after_edit(nodes)
        refresh_ms = (time.perf_counter() - start) * 1000
    n_rois = len(nodes.analysis.rois)
    print(f"time points: {len(nodes.analysis.timepoints)}, ROIs: {n_rois}, tracks: {len(ids)}")
    print(f"load segmentations + table only: {seg_s:.2f} s")
    print(f"load with PET/CT from DICOM:     {full_s:.2f} s  (ratio {full_s / seg_s:.1f}x; DICOM decoding dominates)")
    print(f"layout setup:                    {layout_s * 1000:.1f} ms")
    print(f"jump to a track (all views):     {jump_ms:.2f} ms per track")
    print(f"refresh names/colours/table:     {refresh_ms:.1f} ms for {n_rois} segments")


if __name__ == "__main__":
    main()
