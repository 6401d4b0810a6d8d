"""Registration benchmark: our SimpleITK pipeline vs elastix and plastimatch (Debian programs) on phantoms.

Run: ``.venv/bin/python benchmarks/bench_registration.py [--seeds 3,5] [--timepoints 4] [--methods ...]``.

For every follow-up registered to the baseline (whole body, CT; every motion the phantom makes:
repositioning up to 25 mm / 3 degrees, smooth organ shifts of 3-8 mm, arms up or down, bladder and bowel
filling, different axial field of view) it prints per method: seconds on 2 threads, the error at true lesion
centres (mean / max mm; true centroid mapped through the transform vs the true centroid at the follow-up,
see ``tracking.evaluate.landmark_errors``), NCC before/after, body Dice and the ok flag; then per-method
means and the ratios to the targets (30 s, 3 mm).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tracking import load_patient  # noqa: E402

from LesionResponseLib.tracking.evaluate import landmark_errors  # noqa: E402
from LesionResponseLib.tracking.registration import register_pair  # noqa: E402


def as_timepoint(scan) -> SimpleNamespace:
    return SimpleNamespace(info=SimpleNamespace(index=scan.index), pet_suv=scan.pet_suv, ct=scan.ct)


PLASTIMATCH_STAGES = """\
[STAGE]
xform=translation
optim=rsg
impl=itk
max_its=50
res=4 4 2
[STAGE]
xform=rigid
optim=versor
impl=itk
max_its=60
res=4 4 2
[STAGE]
xform=bspline
impl=plastimatch
optim=lbfgsb
metric=mse
max_its=40
grid_spac=60 60 60
res=4 4 2
[STAGE]
max_its=40
grid_spac=30 30 30
res=2 2 1
"""


def plastimatch_register(fixed_ct: sitk.Image, moving_ct: sitk.Image) -> tuple[sitk.Transform, float]:
    """Peer registration by the Debian ``plastimatch`` program on the same CT pair (translation, rigid,
    then two B-spline levels at 60 and 30 mm, MSE: CT to CT), 4x4x2 then 2x2x1 voxel subsampling (8 mm,
    then 4 mm on 2x2x4 mm CT, like our pipeline). Returns the fixed -> moving transform and seconds."""
    import subprocess
    import tempfile
    import time

    with tempfile.TemporaryDirectory(prefix="bench_plastimatch_") as tmp:
        work = Path(tmp)
        sitk.WriteImage(fixed_ct, str(work / "fixed.mha"))
        sitk.WriteImage(moving_ct, str(work / "moving.mha"))
        (work / "reg.txt").write_text(f"[GLOBAL]\nfixed={work / 'fixed.mha'}\nmoving={work / 'moving.mha'}\n"
                                      f"vf_out={work / 'vf.mha'}\n" + PLASTIMATCH_STAGES)
        start = time.perf_counter()
        subprocess.run(["plastimatch", "register", str(work / "reg.txt")], check=True, capture_output=True)
        seconds = time.perf_counter() - start
        field = sitk.Cast(sitk.ReadImage(str(work / "vf.mha")), sitk.sitkVectorFloat64)
    return sitk.DisplacementFieldTransform(field), seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="3,5", help="comma-separated phantom seeds")
    parser.add_argument("--timepoints", type=int, default=4, help="time points per patient")
    parser.add_argument("--methods", default="identity,sitk-rigid,sitk-bspline,elastix,plastimatch",
                        help="methods to compare (register_pair methods, and plastimatch: the Debian peer)")
    args = parser.parse_args(argv)
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(2)
    methods = args.methods.split(",")
    rows: dict[str, list[tuple[float, float, float]]] = {m: [] for m in methods}
    print(f"{'seed':>4} {'pair':>5} {'method':<13} {'s':>6} {'err mean':>8} {'max':>6} {'NCC0':>5} {'NCC':>5} "
          f"{'Dice':>5}  ok")
    for seed in [int(s) for s in args.seeds.split(",")]:
        patient = load_patient(seed, args.timepoints)
        base = as_timepoint(patient.timepoints[0])
        for scan in patient.timepoints[1:]:
            for method in methods:
                if method == "plastimatch":  # the peer program, outside our pipeline
                    transform, seconds = plastimatch_register(base.ct, scan.ct)
                    err = landmark_errors(transform, patient.truth, 0, scan.index)
                    rows[method].append((seconds, float(err.mean()), float(err.max())))
                    print(f"{seed:>4} {'0->' + str(scan.index):>5} {method:<13} {seconds:>6.1f} {err.mean():>8.2f} "
                          f"{err.max():>6.2f}")
                    continue
                transform, result = register_pair(base, as_timepoint(scan), method=method)
                err = landmark_errors(transform, patient.truth, 0, scan.index)
                q = result.quality
                rows[method].append((result.seconds, float(err.mean()), float(err.max())))
                print(f"{seed:>4} {'0->' + str(scan.index):>5} {method:<13} {result.seconds:>6.1f} {err.mean():>8.2f} "
                      f"{err.max():>6.2f} {q['ncc_before']:>5.2f} {q['ncc_after']:>5.2f} "
                      f"{q['body_dice_after']:>5.3f}  {result.ok} {result.message[:60]}")
    print("\nmethod        mean s  (ratio to 30 s)  mean error mm (ratio to 3 mm)  worst mm")
    for method, values in rows.items():
        seconds, mean, worst = (np.array(v) for v in zip(*values, strict=True))
        print(f"{method:<13} {seconds.mean():>6.1f}  ({seconds.mean() / 30:.2f})          {mean.mean():>6.2f} "
              f"({mean.mean() / 3:.2f})                  {worst.max():.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
