"""Segmentation benchmark: model(s) vs the threshold baseline on held-out phantom patients, every vendor.

Run: ``.venv/bin/python benchmarks/bench_segmentation.py [--seeds 100-104] [--models v1,v2] [--in-memory]``.

Data: project phantom (``LesionResponseLib.phantom``), seeds 100-199 (never used for training, 1000-1999).
Seed ``first + i`` is written as DICOM in vendor ``VENDORS[i % len(VENDORS)]`` (Siemens BQML/START,
Siemens ADMIN, Philips CNTS, GE reprocessed, GML) and read back through ``dicomio.find_timepoints`` /
``load_timepoint``, so the SUV a method sees is the one the pipeline sees. ``--in-memory`` skips DICOM.

Figures per method: lesion sensitivity (true lesions >= 0.5 mL; detected = a predicted ROI with Dice >= 0.1
or containing the centroid), false-positive ROIs per scan (ROIs touching no true lesion), voxels labelled in
each physiological organ (outside the true lesions dilated by 2 voxels, i.e. not partial-volume spill),
median Dice of detected lesions, and seconds per whole-body scan (vertex to thigh, 2 threads).
Every method runs on every scan; the per-scan lines show each method's own ROI count. Models are scored as
shipped (equivocal ROIs dropped: < 0.5 mL and SUVmax not above liver) and "(no filter)".
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.segmentation import segment
from LesionResponseLib.segmentation.metrics import evaluate, organ_voxels
from LesionResponseLib.segmentation.model import MODELS_DIR

MODELS = {p.stem.rsplit("_", 1)[-1]: p for p in sorted(MODELS_DIR.glob("lesion_segresnet_v*.pt"))}


def _model_path(name: str) -> Path:
    """A shipped version (``v2``) or a model file path."""
    return MODELS[name] if name in MODELS else Path(name)


@dataclass
class Totals:
    """Accumulated figures of one method."""

    true: int = 0
    detected: int = 0
    fp: list[int] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)
    organ: dict[str, int] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)


def load_scan(seed: int, vendor: str, cache: Path, in_memory: bool) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """(SUV PET, true lesion labels, organ labels) of phantom ``seed``'s baseline, through DICOM unless
    ``in_memory``; truth is resampled (nearest) onto the loaded PET grid."""
    from LesionResponseLib.phantom import generate_patient, simulate_patient

    if in_memory:
        tp = simulate_patient(seed, timepoints=1, with_ct=False).timepoints[0]
        return tp.pet_suv, tp.lesion_labels, tp.organ_labels
    from LesionResponseLib.dicomio import find_timepoints, load_timepoint

    folder = cache / f"s{seed}_{vendor}"
    if not (folder / "truth.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        generate_patient(folder, seed=seed, timepoints=1, vendor=vendor, extras=False)
    pet = load_timepoint(find_timepoints(folder / "dicom").timepoints[0], with_ct=False).pet_suv
    truth = [sitk.Resample(sitk.ReadImage(str(folder / "truth" / f"tp0_{kind}.nii.gz")), pet, sitk.Transform(),
                           sitk.sitkNearestNeighbor, 0) for kind in ("lesions", "organs")]
    return pet, truth[0], truth[1]


def _variants(pet: sitk.Image, method: str) -> dict[str, tuple[sitk.Image, float]]:
    """Label maps (and seconds) of one method: as shipped, and for models also without the equivocal-ROI
    filter (``components.drop_equivocal_rois``), whose cost is added to the shipped variant's time."""
    from LesionResponseLib.segmentation import drop_equivocal_rois, liver_reference

    start = time.perf_counter()
    is_file = method.endswith(".pt")
    labels = segment(pet, method="model" if is_file else method, model_path=method if is_file else None,
                     equivocal_max_volume_ml=0.0)
    raw_seconds = time.perf_counter() - start
    if method == "threshold":
        return {"": (labels, raw_seconds)}
    filtered = drop_equivocal_rois(labels, pet, liver_reference(pet)[0])
    return {"": (filtered, time.perf_counter() - start), " (no filter)": (labels, raw_seconds)}


def run(seeds: list[int], methods: dict[str, str], cache: Path, in_memory: bool) -> dict[str, Totals]:
    from LesionResponseLib.phantom import ORGAN_LABELS, PHYSIOLOGICAL_ORGANS, VENDORS

    organs = {ORGAN_LABELS[n]: n for n in PHYSIOLOGICAL_ORGANS if n in ORGAN_LABELS}
    totals: dict[str, Totals] = {}
    print(f"{'seed':>4} {'vendor':>13} {'method':>24} {'lesions':>7} {'found':>5} {'ROIs':>4} {'FP':>3} {'Dice':>5} {'s':>5}  organ voxels")
    for i, seed in enumerate(seeds):
        vendor = VENDORS[i % len(VENDORS)]
        pet, lesions, organ_map = load_scan(seed, vendor, cache, in_memory)
        segment(pet, method=next(iter(methods.values())))  # warm-up: model loading is not inference time
        for base, method in methods.items():
            for suffix, (labels, seconds) in _variants(pet, method).items():
                name = base + suffix
                m = evaluate(labels, lesions)
                t = totals.setdefault(name, Totals())
                t.true, t.detected = t.true + m.n_true, t.detected + m.n_detected
                t.fp.append(m.false_positive_rois)
                t.dice += m.dice
                t.seconds.append(seconds)
                spill = {k: v for k, v in organ_voxels(labels, lesions, organ_map, organs).items() if v}
                for organ, n in spill.items():
                    t.organ[organ] = t.organ.get(organ, 0) + n
                n_rois = int(sitk.GetArrayViewFromImage(labels).max())
                dice = f"{np.median(m.dice):.2f}" if m.dice else "-"
                print(f"{seed:>4} {vendor:>13} {name:>24} {m.n_true:>7} {m.n_detected:>5} {n_rois:>4} "
                      f"{m.false_positive_rois:>3} {dice:>5} {seconds:>5.1f}  {spill or ''}", flush=True)
    return totals


def print_table(totals: dict[str, Totals], n_scans: int) -> None:
    print(f"\n{n_scans} whole-body scans; sensitivity for lesions >= 0.5 mL; organ = voxels labelled in "
          "physiological organs (4x4x4 mm voxels) away from true lesions")
    print("| method | sensitivity | FP ROIs/scan (mean, max) | organ voxels labelled | median Dice | s/scan |")
    print("|---|---|---|---|---|---|")
    for name, t in totals.items():
        organ = ", ".join(f"{k} {v}" for k, v in sorted(t.organ.items()) if v) or "none"
        dice = float(np.median(t.dice)) if t.dice else float("nan")
        print(f"| {name} | {t.detected / max(1, t.true):.3f} ({t.detected}/{t.true}) | {np.mean(t.fp):.2f}, "
              f"{max(t.fp)} | {organ} | {dice:.3f} | {np.mean(t.seconds):.1f} |")


def main() -> None:
    import torch

    torch.set_num_threads(2)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="100-104", help="held-out seed range (100-199), e.g. 100-109")
    parser.add_argument("--models", default="v1,v2", help="shipped model versions (v1,v2) or model files to compare")
    parser.add_argument("--in-memory", action="store_true", help="skip the DICOM round trip")
    parser.add_argument("--cache", default=None, help="folder to keep generated DICOM phantoms in")
    args = parser.parse_args()
    first, last = (int(v) for v in args.seeds.split("-"))
    methods = {Path(v).stem if v not in MODELS else v: str(_model_path(v))
               for v in args.models.split(",") if v and _model_path(v).exists()}
    methods["threshold"] = "threshold"
    cache = Path(args.cache) if args.cache else Path(tempfile.gettempdir()) / "lesion_response_bench_seg"
    seeds = list(range(first, last + 1))
    print_table(run(seeds, methods, cache, args.in_memory), len(seeds))


if __name__ == "__main__":
    main()
