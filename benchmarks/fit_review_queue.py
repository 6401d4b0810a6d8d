"""Fit the review queue's logistic model (LesionResponseLib.analysis.queue.MODEL) on development phantom patients.

Run: ``.venv/bin/python benchmarks/fit_review_queue.py --work DIR --seeds 4400-4403`` where ``DIR`` holds
``bench_analysis.py --work DIR`` outputs of those seeds (``analysis_s{seed}_prior_*`` with their phantoms). Each
analysis is first brought to this version's measures and categories (its label maps re-measured, its tracks
re-assessed: what a re-run gives with the same segmentation, registration and links). Every assessed track is one
sample: its features (``analysis.queue.track_features``) and whether the automation got it wrong
(``analysis.truth.track_errors``). The model is L2-penalised logistic regression on standardised features (penalty
``--penalty``: 1.0 keeps weights near the size the data supports with ~100 tracks); a feature whose weight comes out
negative is fixed at 0 and the rest refitted (each feature is a known weak spot: it may fail to help, never make a
track look safer). Prints the model as Python to paste into queue.py, and the development figures (the queue's
curve on the patients it was fitted on: optimistic by construction; the unseen figure is bench_analysis's).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def refreshed(out: Path):
    """The analysis of ``out`` with this version's ROI measures (same label maps) and responses, cached as
    ``out/refreshed-analysis.json`` (keyed on the library's sources, so a change re-measures)."""
    from LesionResponseLib.analysis import assess_response, load_analysis, measure_rois
    from LesionResponseLib.datamodel import Analysis

    sys.path.insert(0, str(REPO / "Testing" / "Python"))
    from review_app_support import _library_digest

    cache = out / "refreshed-analysis.json"
    key = _library_digest()
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return Analysis.from_dict(stored["analysis"])
    analysis = load_analysis(out)
    fresh = {}
    for k in range(len(analysis.timepoints)):
        labels = sitk.ReadImage(str(out / "labels" / f"tp{k}.nii.gz"))
        pet = sitk.ReadImage(str(out / "suv" / f"tp{k}.nii.gz"), sitk.sitkFloat32)
        fresh.update({r.roi_id: r for r in measure_rois(labels, pet, k,
                                                         psf_fwhm_mm=analysis.parameters.quantification.psf_fwhm_mm)})
    rois = [dataclasses.replace(fresh[r.roi_id], status=r.status, source=r.source) if r.roi_id in fresh else r
            for r in analysis.rois]
    responses, heterogeneous = assess_response(analysis.tracks, rois, len(analysis.timepoints), analysis.parameters)
    analysis = dataclasses.replace(analysis, rois=rois, responses=responses, heterogeneous=heterogeneous)
    cache.write_text(json.dumps({"key": key, "analysis": analysis.to_dict()}))
    return analysis


def samples(out: Path, phantom: Path) -> tuple[list[dict[str, float]], list[bool], dict]:
    """Features and wrongness of every assessed track of one analysis, and its interval calibration."""
    from LesionResponseLib.analysis.queue import track_features
    from LesionResponseLib.analysis.truth import interval_calibration, track_errors

    analysis = refreshed(out)
    errors = track_errors(analysis, out, phantom)
    features, wrong = [], []
    for track in analysis.tracks:
        if track.track_id in errors:
            features.append(track_features(analysis, track)[0])
            wrong.append(bool(errors[track.track_id]))
    return features, wrong, interval_calibration(analysis, out, phantom)


def fit_logistic(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[float, np.ndarray]:
    """L2-penalised logistic regression by Newton's method (intercept not penalised): (intercept, weights)."""
    design = np.column_stack([np.ones(len(x)), x])
    beta = np.zeros(design.shape[1])
    ridge = np.full(design.shape[1], penalty)
    ridge[0] = 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-design @ beta))
        gradient = design.T @ (p - y) + ridge * beta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + np.diag(ridge)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return float(beta[0]), beta[1:]


def fit_model(features: list[dict[str, float]], wrong: list[bool], penalty: float) -> dict:
    """The queue's MODEL dict fitted on the samples (non-negative weights, module notes)."""
    from LesionResponseLib.analysis.queue import FEATURES

    x = np.array([[f[name] for name in FEATURES] for f in features], dtype=float)
    y = np.array(wrong, dtype=float)
    means, sds = x.mean(axis=0), x.std(axis=0)
    sds[sds == 0] = 1.0
    z = (x - means) / sds
    active = list(range(len(FEATURES)))
    while True:
        intercept, weights = fit_logistic(z[:, active], y, penalty)
        if (weights >= 0).all():
            break
        active = [a for a, w in zip(active, weights, strict=True) if w >= 0]
    full = dict.fromkeys(FEATURES, 0.0)
    full.update({FEATURES[a]: round(float(w), 4) for a, w in zip(active, weights, strict=True)})
    return {"intercept": round(intercept, 4), "weights": full,
            "means": {n: round(float(m), 4) for n, m in zip(FEATURES, means, strict=True)},
            "sds": {n: round(float(s), 4) for n, s in zip(FEATURES, sds, strict=True)}}


def _pairs(work: Path, seeds: list[int]) -> list[tuple[Path, Path]]:
    found = []
    for seed in seeds:
        outs = sorted(work.glob(f"analysis_s{seed}_prior_*"))
        if not outs:
            raise SystemExit(f"no bench_analysis output of seed {seed} in {work}")
        out = outs[0]
        found.append((out, work / "phantoms" / out.name.split("_prior_", 1)[1]))
    return found


def main() -> None:
    from LesionResponseLib.analysis.queue import MODEL, score_track
    from LesionResponseLib.analysis.truth import queue_capture

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seeds", required=True, help="development seeds, e.g. 4400-4403 or 4400,4402")
    parser.add_argument("--penalty", type=float, default=1.0)
    parser.add_argument("--pair", action="append", default=[], metavar="OUT=PHANTOM",
                        help="another development analysis folder and its phantom folder (repeatable)")
    args = parser.parse_args()
    if "-" in args.seeds:
        low, high = (int(v) for v in args.seeds.split("-"))
        seeds = list(range(low, high + 1))
    else:
        seeds = [int(v) for v in args.seeds.split(",")]
    features, wrong, calibrations = [], [], []
    extra = [tuple(Path(x) for x in pair.split("=", 1)) for pair in args.pair]
    for out, phantom in _pairs(args.work, seeds) + extra:
        f, w, c = samples(out, phantom)
        features += f
        wrong += w
        calibrations.append(c)
        print(f"{out.name}: {len(f)} tracks, {sum(w)} wrong; intervals cover {c['coverage']} of {c['n']} changes; "
              f"wrong calls: indeterminate {c['wrong_indeterminate']} of {c['n_indeterminate']}, confident "
              f"{c['wrong_confident']} of {c['n_confident']}")
    model = fit_model(features, wrong, args.penalty)
    names = ", ".join([args.seeds] + [Path(pair.split("=", 1)[1]).name for pair in args.pair])
    model["fitted_on"] = f"development patients {names} ({len(features)} tracks, {sum(wrong)} wrong), penalty {args.penalty}"
    print("MODEL =", json.dumps(model, indent=1))
    for name, candidate in (("fitted (on its own data)", model), ("in queue.py now", MODEL)):
        scores = {i: score_track(f, candidate) for i, f in enumerate(features)}
        capture = queue_capture(scores, {i for i, w in enumerate(wrong) if w})
        print(f"{name}: " + ", ".join(f"top {100 * c['fraction']:.0f} % holds {c['captured']:.2f} of the wrong "
                                      f"(ceiling {c['ceiling']:.2f})" for c in capture["curve"]))


if __name__ == "__main__":
    main()
