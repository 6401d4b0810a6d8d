"""Segmentation benchmark: shipped model vs threshold baseline on held-out synthetic patients, and timing.

Run: ``.venv/bin/python benchmarks/bench_segmentation.py [--seeds 101-112] [--whole-body]``.
Held-out seeds 101-199 are never used for training (1000-1999). Each seed draws its own acquisition
(voxel 2-5.5 mm, FWHM 5-8 mm, noise), standing in for vendors. A lesion >= 0.5 mL is detected when a
predicted ROI has Dice >= 0.1 with it or contains its centroid; a false positive is a predicted ROI that
touches no true lesion; "organ FP" are false positives lying mostly in a physiological organ.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.segmentation import segment
from LesionResponseLib.segmentation.metrics import evaluate
from LesionResponseLib.segmentation.synthetic import ORGAN_LABELS, synthetic_scan


def run(seeds: list[int]) -> None:
    names = {v: k for k, v in ORGAN_LABELS.items()}
    totals = {m: {"true": 0, "det": 0, "fp": [], "dice": [], "organ": {}, "time": []} for m in ("model", "threshold")}
    print(f"{'seed':>5} {'voxel mm':>14} {'method':>9} {'lesions':>7} {'found':>5} {'FP':>3} {'time s':>6}")
    for seed in seeds:
        scan = synthetic_scan(seed)
        for method, total in totals.items():
            start = time.perf_counter()
            labels = segment(scan.pet_suv, method=method)
            total["time"].append(time.perf_counter() - start)
            m = evaluate(labels, scan.lesions, scan.organs, names)
            total["true"] += m.n_true
            total["det"] += m.n_detected
            total["fp"].append(m.false_positive_rois)
            total["dice"] += m.dice
            for organ, n in m.fp_by_organ.items():
                total["organ"][organ] = total["organ"].get(organ, 0) + n
            spacing = "x".join(f"{s:.1f}" for s in scan.pet_suv.GetSpacing())
            print(f"{seed:>5} {spacing:>14} {method:>9} {m.n_true:>7} {m.n_detected:>5} {m.false_positive_rois:>3} "
                  f"{total['time'][-1]:>6.1f}")
    print("\nmethod     sensitivity(>=0.5 mL)  FP/scan (mean, max)  organ FP ROIs            median Dice  s/scan")
    for method, t in totals.items():
        organ = ", ".join(f"{k}:{v}" for k, v in sorted(t["organ"].items())) or "none"
        print(f"{method:<10} {t['det'] / max(1, t['true']):.3f} ({t['det']}/{t['true']})"
              f"{'':>8}{np.mean(t['fp']):.2f}, {max(t['fp'])}{'':>12}{organ:<24} "
              f"{np.median(t['dice']) if t['dice'] else float('nan'):.3f}        {np.mean(t['time']):.1f}")


def whole_body_timing(repeats: int = 2) -> None:
    """Time the model on a 200 x 200 x 450 voxel (4 mm, 1.8 m) whole-body PET: three stacked scans."""
    scans = [synthetic_scan(seed) for seed in (150, 151, 152)]
    parts = [sitk.Resample(s.pet_suv, [200, 200, 150], sitk.Transform(), sitk.sitkLinear,
                           (-400.0, -400.0, -280.0), (4.0, 4.0, 4.0 * 560 / 600)) for s in scans]
    array = np.concatenate([sitk.GetArrayFromImage(p) for p in parts], axis=0)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((4.0, 4.0, 4.0))
    segment(image)  # warm-up: loads the model
    for _ in range(repeats):
        start = time.perf_counter()
        labels = segment(image)
        print(f"whole-body {image.GetSize()} voxels: {time.perf_counter() - start:.1f} s, "
              f"{int(sitk.GetArrayViewFromImage(labels).max())} ROIs (target < 20 s on 2 CPU cores)")


if __name__ == "__main__":
    import torch

    torch.set_num_threads(2)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="101-112", help="held-out seed range, e.g. 101-112")
    parser.add_argument("--whole-body", action="store_true", help="also time a 1.8 m whole-body PET")
    args = parser.parse_args()
    first, last = (int(v) for v in args.seeds.split("-"))
    run(list(range(first, last + 1)))
    if args.whole_body:
        whole_body_timing()
