"""Registration benchmark: every elastix engine side by side, our SimpleITK pipeline and plastimatch, on phantoms.

Run: ``.venv/bin/python benchmarks/bench_registration.py [--seeds 3,5] [--timepoints 4] [--methods ...]``.

For every follow-up registered to the baseline (whole body, CT; every motion the phantom makes:
repositioning up to 25 mm / 3 degrees, smooth organ shifts of 3-8 mm, arms up or down, bladder and bowel
filling, different axial field of view) it prints per method: wall seconds on 2 threads, CPU seconds (this
process and its children: less sensitive than wall time to other load on the machine), the error at true
lesion centres (mean / max mm; true centroid mapped through the transform vs the true centroid at the
follow-up, see ``tracking.evaluate.landmark_errors``), NCC before/after, body Dice and the ok flag; then
per-method means and the ratios to the targets (30 s, 3 mm), and how far the elastix engines' transforms
are apart at the lesion centres (same parameter maps: they should agree).

Elastix engines (``tracking.elastix``): ``elastix-slicer`` (SlicerElastix's programs; only inside 3D
Slicer, or with ``LESION_RESPONSE_SLICER_ELASTIX_DIR`` set), ``elastix-program`` (``elastix`` on PATH) and
``elastix-itk`` (itk-elastix in-process). An engine that is not available is listed and skipped. The
one-time cost of loading itk-elastix into a process is measured first and printed apart from the pairs.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tracking import load_patient  # noqa: E402

from LesionResponseLib.tracking import elastix  # noqa: E402
from LesionResponseLib.tracking.evaluate import landmark_errors  # noqa: E402
from LesionResponseLib.tracking.registration import ELASTIX_METHODS, register_pair  # noqa: E402

DEFAULT_METHODS = ["identity", "sitk-rigid", "sitk-bspline", *ELASTIX_METHODS, "plastimatch"]


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (elastix programs, plastimatch)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def itk_load_cost() -> tuple[float, float, float]:
    """(wall s, CPU s, resident MB added) of loading itk-elastix's registration class into this process."""
    wall, cpu, rss = time.perf_counter(), cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import itk

    _ = itk.ElastixRegistrationMethod, itk.ParameterObject
    return (time.perf_counter() - wall, cpu_seconds() - cpu,
            (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024)


def available_methods(methods: list[str]) -> list[str]:
    """``methods`` without the elastix engines that are not available here (each listed once)."""
    kept = []
    for method in methods:
        name = method.removeprefix("elastix-")
        if method in ELASTIX_METHODS and elastix.find_engine(name) is None:
            print(f"{method}: not available here ({elastix.install_hint(name)})")
            continue
        if method in ELASTIX_METHODS:
            print(f"{method}: {elastix.find_engine(name).software}")
        kept.append(method)
    if "elastix-itk" in kept:
        wall, cpu, rss = itk_load_cost()
        print(f"elastix-itk: loading itk-elastix (once per process, not in the per-pair figures): {wall:.1f} s "
              f"wall, {cpu:.1f} s CPU, +{rss:.0f} MB resident")
    return kept


def engine_spread(transforms: dict[str, sitk.Transform], truth: dict) -> float:
    """Largest distance (mm) between two elastix engines' images of the true baseline lesion centres."""
    centres = [tuple(float(c) for c in lesion["timepoints"]["0"]["centroid_mm"]) for lesion in truth["lesions"]
               if lesion["timepoints"].get("0", {}).get("present")]
    mapped = [np.array([t.TransformPoint(c) for c in centres]) for m, t in transforms.items() if m in ELASTIX_METHODS]
    return max((float(np.linalg.norm(a - b, axis=1).max()) for a in mapped for b in mapped), default=0.0)


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
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help="methods to compare (register_pair methods, and plastimatch: the Debian peer)")
    args = parser.parse_args(argv)
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(2)
    methods = available_methods(args.methods.split(","))
    rows: dict[str, list[tuple[float, float, float, float]]] = {m: [] for m in methods}
    spreads = []
    print(f"{'seed':>4} {'pair':>5} {'method':<16} {'s':>6} {'cpu s':>6} {'err mean':>8} {'max':>6} {'NCC0':>5} "
          f"{'NCC':>5} {'Dice':>5}  ok")
    for seed in [int(s) for s in args.seeds.split(",")]:
        patient = load_patient(seed, args.timepoints)
        base = as_timepoint(patient.timepoints[0])
        for scan in patient.timepoints[1:]:
            transforms = {}
            for method in methods:
                cpu = cpu_seconds()
                if method == "plastimatch":  # the peer program, outside our pipeline
                    transform, seconds = plastimatch_register(base.ct, scan.ct)
                    tail = ""
                else:
                    transform, result = register_pair(base, as_timepoint(scan), method=method)
                    seconds, q = result.seconds, result.quality
                    tail = (f" {q['ncc_before']:>5.2f} {q['ncc_after']:>5.2f} {q['body_dice_after']:>5.3f}  "
                            f"{result.ok} {result.message[:60]}")
                cpu = cpu_seconds() - cpu
                transforms[method] = transform
                err = landmark_errors(transform, patient.truth, 0, scan.index)
                rows[method].append((seconds, cpu, float(err.mean()), float(err.max())))
                print(f"{seed:>4} {'0->' + str(scan.index):>5} {method:<16} {seconds:>6.1f} {cpu:>6.1f} "
                      f"{err.mean():>8.2f} {err.max():>6.2f}{tail}", flush=True)
            spreads.append(engine_spread(transforms, patient.truth))
    print("\nmethod           mean s  (ratio to 30 s)  mean CPU s  mean error mm (ratio to 3 mm)  worst mm")
    for method, values in rows.items():
        seconds, cpu, mean, worst = (np.array(v) for v in zip(*values, strict=True))
        print(f"{method:<16} {seconds.mean():>6.1f}  ({seconds.mean() / 30:.2f})          {cpu.mean():>6.1f}      "
              f"{mean.mean():>6.2f} ({mean.mean() / 3:.2f})                  {worst.max():.2f}")
    if sum(m in ELASTIX_METHODS for m in methods) > 1:
        print(f"elastix engines apart at the baseline lesion centres: at most {max(spreads):.2f} mm over "
              f"{len(spreads)} pairs")


if __name__ == "__main__":
    main(sys.argv[1:])
