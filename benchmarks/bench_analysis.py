"""Benchmark of the analysis stage.

1. ``measure_rois`` on 1,000 synthetic ROIs (time per call and per ROI).
2. The demo: a 4-time-point phantom (generation excluded) analysed end to end with the default
   parameters (model segmentation, auto registration = elastix when installed) in a child process: wall time, peak memory
   (the child's max RSS), and agreement with the phantom truth (categories, heterogeneity, SUVtotal of
   tracks >= 2 mL, as SUVmean x volume and partial-volume corrected). Targets: < 120 s and < 4 GB on 2 cores.

Run: ``.venv/bin/python benchmarks/bench_analysis.py [--seed 1] [--timepoints 4] [--registration auto]
[--truth-masks]`` (``--truth-masks``: the phantom's true lesion masks instead of the model).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def bench_measure(n_rois: int = 1000, shape=(160, 160, 160), seed: int = 0) -> None:
    from LesionResponseLib.analysis import measure_rois

    rng = np.random.default_rng(seed)
    suv = rng.gamma(2.0, 0.5, shape).astype(np.float32)
    labels = np.zeros(shape, np.uint16)
    centres = rng.integers(4, np.array(shape) - 4, size=(n_rois, 3))
    for k, (z, y, x) in enumerate(centres, start=1):
        labels[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2] = k
        suv[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2] += 10.0
    lab, pet = sitk.GetImageFromArray(labels), sitk.GetImageFromArray(suv)
    for image in (lab, pet):
        image.SetSpacing((4.0, 4.0, 4.0))
    start = time.perf_counter()
    rois = measure_rois(lab, pet, 0)
    seconds = time.perf_counter() - start
    print(f"measure_rois: {len(rois)} ROIs on a {shape} grid in {seconds:.2f} s "
          f"({1000 * seconds / max(len(rois), 1):.2f} ms per ROI)")


def _pvc_category_agreement(analysis, out: Path, phantom: Path) -> float | None:
    """Category agreement with truth had the corrected SUVtotal driven the categories (same ROIs and tracks)."""
    import dataclasses

    from LesionResponseLib.analysis import assess_response
    from LesionResponseLib.analysis.truth import truth_agreement

    params = dataclasses.replace(analysis.parameters, response_measure="suv_total_pvc")
    responses, heterogeneous = assess_response(analysis.tracks, analysis.rois, len(analysis.timepoints), params)
    pvc = dataclasses.replace(analysis, responses=responses, heterogeneous=heterogeneous, parameters=params)
    return truth_agreement(pvc, out, phantom)["category_agreement"]


def run_demo(phantom: Path, out: Path, registration: str, truth_masks: bool) -> None:
    """Child process: analyse the phantom and print a JSON line of figures."""
    from LesionResponseLib.analysis.truth import truth_agreement
    from LesionResponseLib.datamodel import AnalysisParameters
    from LesionResponseLib.workflow import run_pipeline

    marks: list[tuple[str, float]] = []
    start = time.perf_counter()
    analysis, _ = run_pipeline(phantom / "dicom", out, AnalysisParameters(registration_method=registration),
                               labels_dir=phantom / "truth" if truth_masks else None,
                               step=lambda name: marks.append((name, time.perf_counter())))
    seconds = time.perf_counter() - start
    stage_seconds: dict[str, float] = {}
    for (name, t0), (_, t1) in zip(marks, marks[1:] + [("end", start + seconds)], strict=True):
        kind = name.split(" time point")[0].split(" onto")[0]
        stage_seconds[kind] = stage_seconds.get(kind, 0.0) + t1 - t0
    agreement = truth_agreement(analysis, out, phantom)
    def error_figures(key: str) -> dict:
        errors = np.abs(np.asarray(agreement[key]))
        return {"median_abs_pct": float(np.median(errors)) if errors.size else None,
                "within_10pct": float(np.mean(errors <= 10)) if errors.size else None, "n": int(errors.size)}

    print(json.dumps({
        "seconds": seconds, "stage_seconds": stage_seconds, "rois": len(analysis.rois), "tracks": len(analysis.tracks),
        "category_agreement": agreement["category_agreement"], "pairs": agreement["category_pairs"],
        "category_agreement_pvc": _pvc_category_agreement(analysis, out, phantom),
        "heterogeneity_agreement": agreement["heterogeneity_agreement"],
        "truth_tracks_found": agreement["truth_tracks_found"], "truth_tracks": agreement["truth_tracks"],
        "suv_total": error_figures("suv_total_errors_pct"), "suv_total_pvc": error_figures("suv_total_pvc_errors_pct"),
    }))


def bench_demo(seed: int, timepoints: int, registration: str, truth_masks: bool) -> None:
    from LesionResponseLib.phantom import generate_patient

    work = Path(tempfile.mkdtemp(prefix="bench_analysis_"))
    start = time.perf_counter()
    generate_patient(work / "phantom", seed=seed, timepoints=timepoints)
    print(f"phantom generation (excluded): {time.perf_counter() - start:.1f} s")
    child = subprocess.run([sys.executable, __file__, "--child", str(work / "phantom"), str(work / "analysis"),
                            "--registration", registration] + (["--truth-masks"] if truth_masks else []),
                           capture_output=True, text=True, check=False)
    if child.returncode:
        print(child.stderr[-3000:])
        raise SystemExit(child.returncode)
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    masks = "true lesion masks" if truth_masks else "model segmentation"
    print(f"demo analysis ({timepoints} time points, {masks}, registration {registration}): {figures['seconds']:.1f} s "
          f"(target 120 s, ratio {figures['seconds'] / 120:.2f}); peak memory {peak_gb:.2f} GB "
          f"(target 4 GB, ratio {peak_gb / 4:.2f})")
    print("time per stage: " + ", ".join(f"{k} {v:.1f} s" for k, v in figures["stage_seconds"].items()))
    print(f"ROIs {figures['rois']}, tracks {figures['tracks']}, truth tracks found "
          f"{figures['truth_tracks_found']}/{figures['truth_tracks']}")
    print(f"categories agree {figures['category_agreement']:.3f} of {figures['pairs']} pairs "
          f"({figures['category_agreement_pvc']:.3f} had the PV-corrected SUVtotal driven them); heterogeneity "
          f"{figures['heterogeneity_agreement']:.2f}")
    for key, name in (("suv_total", "SUVtotal (SUVmean x volume)"), ("suv_total_pvc", "SUVtotal, PV-corrected")):
        f = figures[key]
        if f["n"]:
            print(f"{name} vs truth, tracks >= 2 mL (n={f['n']}): median |error| {f['median_abs_pct']:.1f} %, "
                  f"within 10 %: {100 * f['within_10pct']:.0f} %")
    print(f"outputs in {work}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timepoints", type=int, default=4)
    parser.add_argument("--registration", default="auto")
    parser.add_argument("--truth-masks", action="store_true", help="use the phantom's true lesion masks "
                                                                   "instead of the segmentation model")
    parser.add_argument("--child", nargs=2, metavar=("PHANTOM", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_demo(Path(args.child[0]), Path(args.child[1]), args.registration, args.truth_masks)
        return
    bench_measure()
    bench_demo(args.seed, args.timepoints, args.registration, args.truth_masks)


if __name__ == "__main__":
    main()
