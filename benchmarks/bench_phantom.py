"""Benchmark: generate a 4-time-point phantom patient (DICOM + truth + MIPs); print time and disk size.

Target (issue 2): under 60 s on 2 cores and under 300 MB. Also times the in-memory training path
(``simulate_patient``, 2 time points, no CT; target a few seconds). Usage: python benchmarks/bench_phantom.py [--seed N]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from LesionResponseLib.phantom import generate_patient, simulate_patient


def folder_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timepoints", type=int, default=4)
    args = parser.parse_args()
    start, cpu = time.perf_counter(), time.process_time()
    patient = simulate_patient(args.seed, 2, with_ct=False)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"simulate_patient seed {args.seed}, 2 time points, no CT: {seconds:.1f} s, CPU {cpu:.1f} s (target "
          f"< 5 s, ratio {cpu / 5:.2f}), PET grid {patient.timepoints[0].pet_suv.GetSize()}, "
          f"{len(patient.lesions)} lesions")
    out = Path(tempfile.mkdtemp(prefix="bench_phantom_"))
    try:
        start, cpu = time.perf_counter(), time.process_time()
        generate_patient(out / "p", seed=args.seed, timepoints=args.timepoints)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        size = folder_size_mb(out / "p")
        n_files = sum(1 for _ in (out / "p" / "dicom").rglob("*.dcm"))
        print(f"phantom seed {args.seed}, {args.timepoints} time points: {seconds:.1f} s (target < 60 s, "
              f"ratio {seconds / 60:.2f}), {size:.0f} MB (target < 300 MB, ratio {size / 300:.2f}), "
              f"{n_files} DICOM files; CPU time {cpu:.1f} s (the wall time on a machine shared by other jobs "
              f"is larger)")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
