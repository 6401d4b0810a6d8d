"""Benchmark of the cohort runner (``cohort-analyze``, LesionResponseLib/workflow/cohort.py).

1. ``--part scaling``: the same small cohort (slab phantoms, 2-3 scans each) analysed from scratch with a
   LocalCluster of 1 and then 2 workers: wall time, patients per minute, the 2-vs-1 throughput ratio, and
   the peak memory of each worker process (max RSS reported by each task).
2. ``--part full``: the paper-sized synthetic cohort (``phantom-cohort --patients 18``: 67 whole-body scans,
   2-7 per patient, mixed vendors), analysed with the default parameters (model segmentation, auto
   registration) on this machine's cores: wall time, and every cohort figure next to the one computed
   from the phantoms' ground truth (``truth_cohort_summary``).

Run (exact commands quoted in docs/evaluation.md and docs/changelog.md):
``.venv/bin/python benchmarks/bench_cohort.py --part scaling [--patients 4] [--segmentation threshold]``
``.venv/bin/python benchmarks/bench_cohort.py --part full --phantoms DIR [--out DIR] [--truth-masks]
[--segmentation threshold] [--registration sitk-rigid]`` (``DIR`` is made by
``lesion-response phantom-cohort --patients 18 --out DIR`` when it has no manifest yet).
Timings depend on the machine's load; the script prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIGURES = ("patients", "scans", "lesion_rois", "median_rois_per_image", "tracks", "median_tracks_per_patient",
           "heterogeneous_first_follow_up_pct", "patients_more_than_one_follow_up", "non_monotonic_among_them",
           "new_at_first_follow_up", "new_resolved_at_last", "new_resolved_at_last_pct",
           "disappeared_at_first_follow_up", "disappeared_returned_at_last", "disappeared_returned_at_last_pct")


def _load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def _run(manifest: Path, out: Path, workers: int | None, params) -> tuple[float, dict]:
    from LesionResponseLib.workflow.cohort import ClusterPlan, discover, run_cohort

    start = time.perf_counter()
    run = run_cohort(discover(manifest), out, params, ClusterPlan(workers=workers, dashboard_address=":0"),
                     on_result=lambda r: print(f"  {r.status:8s} {r.patient_id} {r.seconds} s "
                                               f"{r.worker_peak_rss_mb} MB {r.error or ''}", flush=True))
    return time.perf_counter() - start, run


def bench_scaling(patients: int, params, work: Path) -> None:
    from LesionResponseLib.phantom.cohort import generate_cohort

    phantoms = generate_cohort(work / "phantoms", patients=patients, seed=101, axial_extent_mm=160, extras=False)
    rates = {}
    for workers in (1, 2):
        out = work / f"out-{workers}"
        shutil.rmtree(out, ignore_errors=True)
        print(f"{workers} worker(s), {_load()}")
        seconds, run = _run(phantoms / "manifest.csv", out, workers, params)
        rss = [r["worker_peak_rss_mb"] for r in run["patients"] if r.get("worker_peak_rss_mb")]
        rates[workers] = patients / seconds * 60
        print(f"{workers} worker(s): {seconds:.1f} s for {patients} patients ({rates[workers]:.2f} patients/min), "
              f"worker peak RSS max {max(rss):.0f} MB")
    print(f"throughput 2 workers / 1 worker: {rates[2] / rates[1]:.2f} (ideal 2.0 on >= 2 idle cores); {_load()}")


def bench_full(phantoms: Path, out: Path, params, workers: int | None, truth_masks: bool) -> None:
    from LesionResponseLib.analysis import truth_cohort_summary
    from LesionResponseLib.phantom.cohort import generate_cohort

    if not (phantoms / "manifest.csv").is_file():
        start = time.perf_counter()
        generate_cohort(phantoms, patients=18)
        print(f"generated 18 phantom patients in {time.perf_counter() - start:.0f} s")
    manifest = phantoms / "manifest.csv"
    if truth_masks:  # the phantoms' true lesion masks as ROIs: the cohort figures then test tracking + response
        import pandas as pd

        table = pd.read_csv(manifest)
        table["labels"] = [f"{pid}/truth" for pid in table["patient_id"]]
        manifest = phantoms / "manifest-truth-masks.csv"
        table.to_csv(manifest, index=False)
    print(f"analysing {manifest} into {out}, {_load()}")
    seconds, run = _run(manifest, out, workers, params)
    done = [r for r in run["patients"] if r["status"] != "failed"]
    rss = [r["worker_peak_rss_mb"] for r in done if r.get("worker_peak_rss_mb")]
    print(f"18-patient cohort: {seconds / 60:.1f} min, {len(done)} analysed, "
          f"{len(run['patients']) - len(done)} failed, worker peak RSS max {max(rss, default=0):.0f} MB; {_load()}")
    ids = {r["patient_id"] for r in done}
    truth = truth_cohort_summary([phantoms / pid for pid in sorted(ids)])
    figures = run["figures"] or {}
    print(f"{'figure':40s} {'analysis':>10s} {'truth':>10s}")
    for name in FIGURES:
        print(f"{name:40s} {figures.get(name)!s:>10s} {truth.get(name)!s:>10s}")
    (out / "bench-truth.json").write_text(json.dumps({"analysis": figures, "truth": truth, "seconds": seconds},
                                                     indent=1))


def main() -> None:
    from LesionResponseLib.config import AnalysisParameters

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("scaling", "full"), default="scaling")
    parser.add_argument("--patients", type=int, default=4, help="patients of the scaling cohort")
    parser.add_argument("--segmentation", default=None, help="default: threshold (scaling), model (full)")
    parser.add_argument("--registration", default=None, help="default: sitk-rigid (scaling), auto (full)")
    parser.add_argument("--workers", type=int, default=None, help="full part: LocalCluster workers (default: the "
                                                                  "runner's choice)")
    parser.add_argument("--phantoms", type=Path, default=None, help="full part: the phantom-cohort folder")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--truth-masks", action="store_true", help="full part: the phantoms' true lesion masks "
                                                                   "instead of segmenting (tests tracking + response)")
    args = parser.parse_args()
    scaling = args.part == "scaling"
    params = AnalysisParameters().updated({"segmentation.method": args.segmentation or ("threshold" if scaling else "model"), "registration.method": args.registration or ("sitk-rigid" if scaling else "auto")})
    print(f"{os.cpu_count()} cores; segmentation {'truth masks' if args.truth_masks else params.segmentation.method}, "
          f"registration {params.registration.method}")
    if scaling:
        with tempfile.TemporaryDirectory(prefix="lr-bench-cohort-") as tmp:
            bench_scaling(args.patients, params, args.out or Path(tmp))
    else:
        work = Path(tempfile.mkdtemp(prefix="lr-bench-cohort-"))
        bench_full(args.phantoms or work / "phantoms", args.out or work / "out", params, args.workers,
                   args.truth_masks)


if __name__ == "__main__":
    main()
