"""Tracking benchmark: lesion matching on phantom patients against truth, and matching speed.

Run: ``.venv/bin/python benchmarks/bench_tracking.py [--seeds 3,5] [--timepoints 4] [--skip-registration]``.

Per phantom patient (every motion the phantom makes: repositioning, rotation, smooth non-rigid bumps;
arms up/down; bladder and bowel filling), with the **truth lesion masks as input**, matching runs with
(a) the true motion as the transform (matching alone), (b) our registration (``register_pair``, every
follow-up to the baseline) and (c) no registration (identity). It prints link precision / recall, pairwise
partition precision / recall, split/merge tracks correct, and the registration error at lesion centres
(definitions: ``LesionResponseLib.tracking.evaluate``). ``--segmented`` adds the end-to-end case with the
segmentation model's ROIs (links scored on ROIs overlapping a truth lesion).
Then timing: matching 1,000 ROIs per time point over 7 time points.
Simulated patients are cached in ``Testing/.cache/tracking_bench``.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.tracking import build_tracks, match_rois
from LesionResponseLib.tracking.evaluate import (
    label_rois,
    landmark_errors,
    motion_transform,
    score_links,
    score_segmented,
    truth_correspondence,
)
from LesionResponseLib.tracking.registration import register_pair

CACHE = Path(__file__).resolve().parents[1] / "Testing" / ".cache" / "tracking_bench"


def load_patient(seed: int, timepoints: int):
    """The simulated phantom patient (with CT), cached as a pickle."""
    from LesionResponseLib.phantom import simulate_patient

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"patient_s{seed}_t{timepoints}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    patient = simulate_patient(seed, timepoints)
    path.write_bytes(pickle.dumps(patient))
    return patient


def true_transforms(patient) -> dict[tuple[int, int], sitk.Transform]:
    """Baseline -> follow-up true motion transforms."""
    scans = patient.timepoints
    return {(0, j): motion_transform(scans[0].motion, scans[j].motion, scans[0].pet_suv)
            for j in range(1, len(scans))}


def evaluate_patient(patient, transforms, params: AnalysisParameters) -> dict[str, float]:
    labels = {tp.index: tp.lesion_labels for tp in patient.timepoints}
    rois = [r for tp in patient.timepoints for r in label_rois(tp.lesion_labels, tp.index)]
    links = match_rois(labels, rois, transforms, params)
    tracks = build_tracks(rois, links)
    return score_links(links, tracks, patient.truth)


def registered_transforms(patient, method: str) -> tuple[dict, list]:
    """Every follow-up registered to the baseline with ``register_pair``."""
    from types import SimpleNamespace

    def tp(scan):
        return SimpleNamespace(info=SimpleNamespace(index=scan.index), pet_suv=scan.pet_suv, ct=scan.ct)

    transforms, results = {}, []
    for scan in patient.timepoints[1:]:
        transforms[(0, scan.index)], result = register_pair(tp(patient.timepoints[0]), tp(scan), method=method)
        results.append(result)
    return transforms, results


def evaluate_segmented(patient, transforms, params: AnalysisParameters) -> dict[str, float]:
    """End to end: the segmentation model's ROIs, matched, scored against the truth lesions they overlap."""
    from LesionResponseLib.segmentation import segment

    labels = {tp.index: segment(tp.pet_suv, tp.ct) for tp in patient.timepoints}
    rois = [r for tp, image in labels.items() for r in label_rois(image, tp)]
    links = match_rois(labels, rois, transforms, params)
    mapping = truth_correspondence(labels, {tp.index: tp.lesion_labels for tp in patient.timepoints})
    scores = score_segmented(links, build_tracks(rois, links), patient.truth, mapping)
    scores["n_rois"] = float(len(rois))
    scores["n_rois_on_lesions"] = float(len(mapping))
    return scores


def landmark_summary(patient, transforms) -> tuple[float, float]:
    errors = np.concatenate([landmark_errors(t, patient.truth, i, j) for (i, j), t in transforms.items()])
    return float(errors.mean()), float(errors.max())


def print_scores(name: str, s: dict[str, float]) -> None:
    print(f"  {name:<14} links {int(s['n_links']):>4}/{int(s['n_true_links']):<4} P {s['link_precision']:.3f} "
          f"R {s['link_recall']:.3f}  pairwise P {s['pair_precision']:.3f} R {s['pair_recall']:.3f}  "
          f"split/merge {int(s['split_merge_correct'])}/{int(s['n_split_merge_tracks'])}  "
          f"tracks exact {s['tracks_exact']:.3f}")


def synthetic_load(n_rois: int, n_timepoints: int, seed: int = 0, shape=(200, 160, 160)):
    """Label maps with ``n_rois`` small spheres per time point, shifted by 3 mm per time point."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform([6, 6, 6], np.asarray(shape) - 6, size=(n_rois, 3))
    labels, rois, transforms = {}, [], {}
    for tp in range(n_timepoints):
        array = np.zeros(shape, np.uint16)
        for k, c in enumerate(centres + tp * 0.75, start=1):
            z, y, x = np.round(c).astype(int)
            array[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2] = k
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((4.0, 4.0, 4.0))
        labels[tp] = image
        rois += label_rois(image, tp)
        if tp:
            transforms[(0, tp)] = sitk.TranslationTransform(3, (3.0 * tp,) * 3)
    return labels, rois, transforms


def bench_speed(n_rois: int = 1000, n_timepoints: int = 7) -> None:
    labels, rois, transforms = synthetic_load(n_rois, n_timepoints)
    params = AnalysisParameters()
    start = time.perf_counter()
    links = match_rois(labels, rois, transforms, params)
    t_match = time.perf_counter() - start
    start = time.perf_counter()
    tracks = build_tracks(rois, links)
    t_tracks = time.perf_counter() - start
    right = sum(1 for link in links if link.roi_a.split("-")[1] == link.roi_b.split("-")[1])
    print(f"\nspeed: {n_rois} ROIs x {n_timepoints} time points on a {labels[0].GetSize()} grid, translations: "
          f"match_rois {t_match:.2f} s, build_tracks {t_tracks * 1000:.0f} ms; {len(links)} links "
          f"({right} correct), {len(tracks)} tracks (truth {n_rois}); target < 2 s -> ratio {t_match / 2:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="3,5", help="comma-separated phantom seeds")
    parser.add_argument("--timepoints", type=int, default=4, help="time points per patient (2-7)")
    parser.add_argument("--skip-registration", action="store_true", help="only true-motion and identity runs")
    parser.add_argument("--method", default="auto", help="registration method (auto = elastix when installed)")
    parser.add_argument("--dilations", default="", help="also score these dilation_mm values (comma list)")
    parser.add_argument("--segmented", action="store_true", help="also run end to end on the model's ROIs")
    args = parser.parse_args(argv)
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(2)
    params = AnalysisParameters()
    for seed in [int(s) for s in args.seeds.split(",")]:
        patient = load_patient(seed, args.timepoints)
        n = sum(1 for _ in patient.truth["lesions"])
        print(f"seed {seed}: {args.timepoints} time points, {n} truth lesions")
        truth_t = true_transforms(patient)
        print_scores("true motion", evaluate_patient(patient, truth_t, params))
        identity = {key: sitk.Transform(3, sitk.sitkIdentity) for key in truth_t}
        print_scores("identity", evaluate_patient(patient, identity, params))
        mean, worst = landmark_summary(patient, identity)
        print(f"  {'':<14} lesion-centre error without registration: mean {mean:.1f} mm, max {worst:.1f} mm")
        if args.skip_registration:
            continue
        registered, results = registered_transforms(patient, args.method)
        print_scores(f"{args.method}", evaluate_patient(patient, registered, params))
        mean, worst = landmark_summary(patient, registered)
        print(f"  {'':<14} lesion-centre error after registration: mean {mean:.2f} mm, max {worst:.2f} mm; "
              f"{sum(r.ok for r in results)}/{len(results)} ok, {np.mean([r.seconds for r in results]):.1f} s each")
        for dilation in [float(d) for d in args.dilations.split(",") if d]:
            print_scores(f"dilation {dilation:g}", evaluate_patient(patient, registered,
                                                                   AnalysisParameters().updated({"matching.dilation_mm": dilation})))
        if args.segmented:
            s = evaluate_segmented(patient, registered, params)
            print_scores("segmented", s)
            print(f"  {'':<14} {int(s['n_rois_on_lesions'])}/{int(s['n_rois'])} ROIs on truth lesions; recall over "
                  f"detectable links {s['detectable_link_recall']:.3f} ({int(s['n_detectable_links'])}); "
                  f"{int(s['n_links_unmatched'])} links between false-positive ROIs")
    bench_speed()


if __name__ == "__main__":
    main(sys.argv[1:])
