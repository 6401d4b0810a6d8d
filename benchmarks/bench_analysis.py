"""Benchmark of the analysis stage.

1. ``measure_rois`` on 1,000 synthetic ROIs (time per call and per ROI).
2. The demo: a 4-time-point phantom (generation excluded) analysed end to end with the default
   parameters (model segmentation, auto registration = elastix when installed) in a child process: wall time, peak memory
   (the child's max RSS), and agreement with the phantom truth (categories, heterogeneity, SUVtotal of
   tracks >= 2 mL, as SUVmean x volume and partial-volume corrected). Targets: < 120 s and < 4 GB on 2 cores.

Run: ``.venv/bin/python benchmarks/bench_analysis.py [--seed 1] [--timepoints 4] [--registration auto]
[--truth-masks]`` (``--truth-masks``: the phantom's true lesion masks instead of the model).

Harder patients (issue 17): ``--seeds 4300-4301 --timepoints 7 --lesions 60 --near-organs 0.3`` (high burden)
or ``--small-lesions --low-contrast`` (small, faint lesions); ``--no-prior-search`` for the analysis without the
prior-guided search, ``--candidates`` to confirm model candidates too, ``--compare`` for without-then-with on
the same segmentation and registrations, ``--work DIR`` to keep (and reuse) the generated phantoms,
``--skip-measure`` to skip part 1, ``--reuse-cache`` to start from an earlier output's stage cache in ``--work``,
``--param NAME=VALUE`` to set any other ``AnalysisParameters`` field (the output folder's name says which),
``--pool --work DIR`` to print the interval and review-queue figures pooled over the patients analysed in ``DIR``.
Besides the figures above it prints, per patient, the category agreement over *all* true lesion × follow-up
pairs (and those of lesions >= 0.5 mL), the recall of *decreasing*, the same where a lesion below Rose's
detection limit (expected CNR < 5, ``segmentation.metrics.expected_peak_cnr``) may also be called disappearing
/ new, the **ideal-observer ceiling** (``analysis.truth.detectability_ceiling``: the share of pairs that any
detector could call right at all, from each lesion's ideal-observer d' in truth.json, and the agreement over
those pairs only), detection of lesions at follow-ups (present earlier) vs first detections, false-positive ROIs per scan
by source and where they lie (the phantom organ under each), link precision / recall / F1 of the output ROIs (``tracking.evaluate.score_segmented``) and the
registration error at true lesion centres (mean, 95th percentile, max), and (issue 32) how often the ΔSUVtotal
intervals cover the true change, how often indeterminate vs confident calls are wrong, and the review queue's
curve: the share of the wrong tracks in its top 10 %, 20 %, ... (``confidence_figures``; ``--split-neighbours``
adds splitting lesions beside stable neighbours, ``phantom_options.py``). Seeds: 4200-4219 and 4300-4303 are
development seeds (looked at while building the prior-guided search), 4304-4399 evaluation seeds (never looked
at before their benchmark run; never tune on them; 4304-4326 used, the next evaluation starts at 4327); see
Resources/Models/MODEL_CARD.md. Issue 32 (uncertainty, review queue, links beside a split): 4400-4409 are
development seeds (the contour shift and the queue's weights were set on 4400-4403 and the demo's seed 1),
4410-4449 evaluation seeds (4410-4416 used), docs/confidence-and-review-queue.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from phantom_options import add_phantom_options, options_key, phantom_options  # noqa: E402


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


def _with_measure(analysis, measure: str):
    """The analysis with its categories recomputed from ``measure`` (same ROIs and tracks)."""
    import dataclasses

    from LesionResponseLib.analysis import assess_response

    params = analysis.parameters.updated({"response.measure": measure})
    responses, heterogeneous = assess_response(analysis.tracks, analysis.rois, len(analysis.timepoints), params)
    return dataclasses.replace(analysis, responses=responses, heterogeneous=heterogeneous, parameters=params)


#: The other measure of each (the benchmark prints what the categories would have been with it).
OTHER_MEASURE = {"suv_total_pvc": "suv_total", "suv_total": "suv_total_pvc"}
MEASURE_NAMES = {"suv_total_pvc": "the PV-corrected SUVtotal", "suv_total": "SUVmean x volume (the paper's)"}


def _track_cnr(truth: dict, out: Path, phantom: Path) -> dict[tuple[int, int], float]:
    """(truth track, time point) -> highest expected peak CNR of its lesions there (0 when absent), measured on
    the analysis' SUV PET around the true masks (``metrics.expected_peak_cnr``, as bench_segmentation)."""
    from bench_segmentation import RECON_FWHM_MM

    from LesionResponseLib.segmentation.metrics import expected_peak_cnr

    cnr: dict[tuple[int, int], float] = {}
    for k in range(int(truth["n_timepoints"])):
        pet = sitk.ReadImage(str(out / "suv" / f"tp{k}.nii.gz"))
        suv = sitk.GetArrayFromImage(pet)
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom / "truth" / f"tp{k}_lesions.nii.gz")))
        for lesion in truth["lesions"]:
            entry, key = lesion["timepoints"][str(k)], (int(lesion["track_id"]), k)
            value = (expected_peak_cnr(suv, labels, [int(v) for v in entry["labels"]],
                                       true_suv_max=entry["suv_max"], volume_ml=entry["volume_ml"],
                                       spacing_mm=min(pet.GetSpacing()), recon_fwhm_mm=RECON_FWHM_MM)
                     if entry["present"] else 0.0)
            cnr[key] = max(cnr.get(key, 0.0), value)
    return cnr


def _detectable_figures(pairs: list[dict], cnr: dict[tuple[int, int], float]) -> dict:
    """Agreement when a lesion below Rose's detection limit (expected peak CNR < 5) may also be called what a
    detector would see: *disappearing* when it is below the limit at the follow-up only, *new* when at the
    baseline only; pairs below the limit at both are left out. A pair agrees when its measured category is the
    true one or that one (the known-location search can beat Rose's blind-detection limit, so both count)."""
    from bench_segmentation import ROSE_CNR

    rows, relabelled = [], 0
    for p in pairs:
        seen0, seenk = cnr[(p["truth_track"], 0)] >= ROSE_CNR, cnr[(p["truth_track"], p["follow_up"])] >= ROSE_CNR
        if seen0 or seenk:
            visible = p["truth"] if seen0 and seenk else "disappearing" if seen0 else "new"
            relabelled += visible != p["truth"]
            rows.append({**p, "ok": p["measured"] in (p["truth"], visible)})

    def share(subset: list[dict]) -> float | None:
        return sum(r["ok"] for r in subset) / len(subset) if subset else None

    large = [r for r in rows if r["large"]]
    decreasing = [r for r in rows if r["truth"] == "decreasing"]
    return {"agreement_all": share(rows), "n_all": len(rows), "agreement_large": share(large), "n_large": len(large),
            "decreasing_recall": share(decreasing), "n_decreasing": len(decreasing),
            "n_undetectable": len(pairs) - len(rows), "n_relabelled": relabelled}


def _ceiling(truth: dict, pairs: list[dict], phantom: Path) -> dict:
    """``analysis.truth.detectability_ceiling`` with the whole-body search threshold of this patient (its body
    volume at the baseline, the reconstructed resolution of bench_segmentation) and, for comparison, the
    ceiling if every lesion's location were known at every scan (no search at all)."""
    from bench_segmentation import RECON_FWHM_MM

    from LesionResponseLib.analysis.truth import KNOWN_LOCATION_D, detectability_ceiling, whole_body_d

    organs = sitk.ReadImage(str(phantom / "truth" / "tp0_organs.nii.gz"))
    body_ml = float((sitk.GetArrayViewFromImage(organs) > 0).sum()) * float(np.prod(organs.GetSpacing())) / 1000
    return {"search": detectability_ceiling(truth, pairs, whole_body_d(body_ml, RECON_FWHM_MM)),
            "known": detectability_ceiling(truth, pairs, KNOWN_LOCATION_D), "body_ml": body_ml}


def _false_positive_sites(analysis, roi_ids: list[str], out: Path, phantom: Path) -> dict[str, int]:
    """False-positive ROIs by where they lie: the phantom organ holding most of the ROI's voxels (``other
    tissue`` outside every organ), with the ROI's source, e.g. ``{"pituitary (prior-guided)": 5}``."""
    from LesionResponseLib.phantom import ORGAN_LABELS

    names = {value: name for name, value in ORGAN_LABELS.items()}
    by_id = {r.roi_id: r for r in analysis.rois}
    sites: Counter = Counter()
    for k in sorted({by_id[rid].timepoint for rid in roi_ids}):
        labels = sitk.ReadImage(str(out / "labels" / f"tp{k}.nii.gz"))
        organs = sitk.Resample(sitk.ReadImage(str(phantom / "truth" / f"tp{k}_organs.nii.gz")), labels,
                               sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        label_map, organ_map = sitk.GetArrayViewFromImage(labels), sitk.GetArrayViewFromImage(organs)
        for rid in (r for r in roi_ids if by_id[r].timepoint == k):
            inside = organ_map[label_map == by_id[rid].label]
            inside = inside[inside > 0]
            organ = names.get(int(np.bincount(inside).argmax()), "other tissue") if inside.size else "other tissue"
            sites[f"{organ} ({by_id[rid].source})"] += 1
    return dict(sites.most_common())


def _longitudinal_figures(analysis, other, out: Path, phantom: Path) -> dict:
    """Issue-17 figures: all-pair categories, detection by history, false positives, links, registration
    (``other``: the same analysis with the other measure's categories, :func:`_with_measure`)."""
    from LesionResponseLib.analysis.outputs import load_labels
    from LesionResponseLib.analysis.truth import lesion_pair_agreement
    from LesionResponseLib.datamodel import search_counts
    from LesionResponseLib.tracking import load_transform
    from LesionResponseLib.tracking.evaluate import landmark_errors, score_segmented, truth_correspondence

    pairs = lesion_pair_agreement(analysis, out, phantom)
    other_pairs = lesion_pair_agreement(other, out, phantom)
    truth = json.loads((phantom / "truth.json").read_text())
    n = len(analysis.timepoints)
    accepted = {r.roi_id for r in analysis.rois if r.status == "accepted"}
    truth_labels = {k: sitk.ReadImage(str(phantom / "truth" / f"tp{k}_lesions.nii.gz")) for k in range(n)}
    mapping = {rid: t for rid, t in truth_correspondence(load_labels(out, n), truth_labels).items() if rid in accepted}
    links = score_segmented(analysis.links, analysis.tracks, truth, mapping)
    precision, recall = links["link_precision"], links["detectable_link_recall"]
    errors = np.concatenate([landmark_errors(load_transform(out / r.transform_path), truth, 0, r.moving_timepoint)
                             for r in analysis.registrations]) if analysis.registrations else np.zeros(0)
    sources = {s: sum(r.source == s for r in analysis.rois if r.status == "accepted") for s in ("model", "prior-guided")}
    counts = search_counts(analysis.prior_searches)
    detectable = _detectable_figures(pairs["pairs"], _track_cnr(truth, out, phantom))
    ceiling = _ceiling(truth, pairs["pairs"], phantom)
    return {"pairs": {k: v for k, v in pairs.items() if k not in ("pairs", "confusions", "false_positive_rois")},
            "false_positive_sites": _false_positive_sites(analysis, pairs["false_positive_rois"], out, phantom),
            "pairs_detectable": detectable, "ceiling": ceiling,
            "pairs_other": {k: other_pairs[k] for k in ("agreement_all", "agreement_large", "decreasing_recall")},
            "other_measure": MEASURE_NAMES[other.parameters.response.measure],
            "confusions": {f"{a}->{b}": c for (a, b), c in pairs["confusions"].items()},
            "links": {"precision": precision, "recall_detectable": recall,
                      "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
                      "split_merge_correct": links["split_merge_correct"], "n_split_merge": links["n_split_merge_tracks"]},
            "registration_error_mm": {"mean": float(errors.mean()) if errors.size else None,
                                      "p95": float(np.percentile(errors, 95)) if errors.size else None,
                                      "max": float(errors.max()) if errors.size else None, "n": int(errors.size)},
            "roi_sources": sources, "searches": counts["searches"], "searches_found": counts["found"],
            "found_by_model": counts["by_model"], "candidates_confirmed": counts["candidates"]}


def run_demo(phantom: Path, out: Path, registration: str, truth_masks: bool, prior_search: bool = True,
             candidates: bool = False, model: str | None = None, overrides: dict | None = None) -> None:
    """Child process: analyse the phantom and print a JSON line of figures (``overrides``: other
    ``AnalysisParameters`` fields)."""
    from LesionResponseLib.analysis.truth import truth_agreement
    from LesionResponseLib.config import AnalysisParameters
    from LesionResponseLib.workflow import run_pipeline

    marks: list[tuple[str, float]] = []
    start = time.perf_counter()
    params = AnalysisParameters().updated({"registration.method": registration, "prior_search.enabled": prior_search,
                                           "prior_search.candidates": candidates, "segmentation.model_path": model,
                                           **(overrides or {})})
    analysis, _ = run_pipeline(phantom / "dicom", out, params,
                               labels_dir=phantom / "truth" if truth_masks else None,
                               step=lambda name: marks.append((name, time.perf_counter())))
    seconds = time.perf_counter() - start
    stage_seconds: dict[str, float] = {}
    for (name, t0), (_, t1) in zip(marks, marks[1:] + [("end", start + seconds)], strict=True):
        kind = name.split(" time point")[0].split(" onto")[0]
        stage_seconds[kind] = stage_seconds.get(kind, 0.0) + t1 - t0
    agreement = truth_agreement(analysis, out, phantom)
    other = _with_measure(analysis, OTHER_MEASURE[analysis.parameters.response.measure])
    def error_figures(key: str) -> dict:
        errors = np.abs(np.asarray(agreement[key]))
        return {"median_abs_pct": float(np.median(errors)) if errors.size else None,
                "within_10pct": float(np.mean(errors <= 10)) if errors.size else None, "n": int(errors.size)}

    print(json.dumps({
        "seconds": seconds, "stage_seconds": stage_seconds, "rois": len(analysis.rois), "tracks": len(analysis.tracks),
        "category_agreement": agreement["category_agreement"], "pairs": agreement["category_pairs"],
        "category_agreement_other": truth_agreement(other, out, phantom)["category_agreement"],
        "other_measure": MEASURE_NAMES[other.parameters.response.measure],
        "heterogeneity_agreement": agreement["heterogeneity_agreement"],
        "truth_tracks_found": agreement["truth_tracks_found"], "truth_tracks": agreement["truth_tracks"],
        "suv_total": error_figures("suv_total_errors_pct"), "suv_total_pvc": error_figures("suv_total_pvc_errors_pct"),
        "timepoints": len(analysis.timepoints), "longitudinal": _longitudinal_figures(analysis, other, out, phantom),
        "confidence": confidence_figures(analysis, out, phantom),
    }))


#: Shares of the review queue (from the top) at which the benchmark prints how many of the wrong tracks it holds.
QUEUE_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def confidence_figures(analysis, out: Path, phantom: Path, pairs: bool = False) -> dict:
    """Issue-32 figures: the ΔSUVtotal intervals against the true changes (coverage, wrong calls among
    indeterminate and confident ones) and the review queue's curve over the tracks the automation got wrong
    (``analysis.truth.track_errors``: false positive / false link / missed link / category); ``pairs``: with the
    calibration's matched pairs."""
    from LesionResponseLib.analysis.queue import review_queue
    from LesionResponseLib.analysis.truth import interval_calibration, queue_capture, track_errors

    calibration = interval_calibration(analysis, out, phantom)
    errors = track_errors(analysis, out, phantom)
    scores = {item.track_id: item.score for item in review_queue(analysis)}
    wrong = {t for t, found in errors.items() if found}
    kinds = Counter(kind for found in errors.values() for kind in found)
    return {"calibration": {k: v for k, v in calibration.items() if pairs or k != "pairs"},
            "queue": queue_capture(scores, wrong, QUEUE_FRACTIONS), "errors": dict(kinds)}


def pooled_confidence(work: Path) -> dict:
    """The issue-32 figures over every patient analysed under ``work`` (its ``analysis_s*`` folders, each with the
    phantom it names): the intervals of all matched pairs together, and per share ``f`` of each patient's queue
    the wrong tracks in its top ``f`` over all wrong tracks (a reader reviewing the top ``f`` of every patient)."""
    import re

    from LesionResponseLib.analysis import load_analysis
    from LesionResponseLib.analysis.truth import calibration_summary

    pairs, patients, kinds, level = [], [], Counter(), None
    for out in sorted(work.glob("analysis_s*")):
        name = re.search(r"_(v\d+_s\d+_t\d+.*)$", out.name)
        if name is None or not (out / "analysis.json").is_file():
            continue
        figures = confidence_figures(load_analysis(out), out, work / "phantoms" / name.group(1), pairs=True)
        pairs += figures["calibration"]["pairs"]
        level = figures["calibration"]["level"]
        patients.append((out.name, figures["queue"]))
        kinds.update(figures["errors"])
    wrong = sum(q["wrong"] for _, q in patients)
    curve = [{"fraction": f, "captured": sum((q["curve"][i]["captured"] or 0) * q["wrong"] for _, q in patients) / wrong,
              "ceiling": sum((q["curve"][i]["ceiling"] or 0) * q["wrong"] for _, q in patients) / wrong}
             for i, f in enumerate(QUEUE_FRACTIONS)] if wrong else []
    return {"patients": [n for n, _ in patients],
            "calibration": {k: v for k, v in calibration_summary(pairs, level).items() if k != "pairs"},
            "queue": {"tracks": sum(q["tracks"] for _, q in patients), "wrong": wrong, "curve": curve},
            "errors": dict(kinds)}


def _phantom(work: Path, seed: int, timepoints: int, options: dict) -> Path:
    """The phantom of ``seed`` with ``options`` under ``work`` (generated once, reused by later runs)."""
    from LesionResponseLib.phantom import PHANTOM_VERSION, generate_patient

    key = "_".join([f"v{PHANTOM_VERSION}", f"s{seed}", f"t{timepoints}"] +
                   options_key(options))
    folder = work / "phantoms" / key
    if not (folder / "truth.json").is_file():
        start = time.perf_counter()
        generate_patient(folder, seed=seed, timepoints=timepoints, **options)
        print(f"phantom seed {seed} generation (excluded): {time.perf_counter() - start:.1f} s")
    _add_ideal_snr(folder)
    return folder


def _add_ideal_snr(folder: Path) -> None:
    """Give a phantom generated before truth.json had ``ideal_snr`` its ideal observer's d' (the seed renders
    the same images, so the simulation is re-run in memory and only truth.json is completed)."""
    from LesionResponseLib.phantom import simulate_patient

    truth = json.loads((folder / "truth.json").read_text())
    if all("ideal_snr" in e for le in truth["lesions"] for e in le["timepoints"].values()):
        return
    options = {k: v for k, v in truth["options"].items() if k not in ("extras", "motion_scale")}
    patient = simulate_patient(truth["seed"], truth["n_timepoints"], with_nac=False, with_ct=False,
                               motion_scale=truth["options"]["motion_scale"], **options)
    snrs = {le["lesion_id"]: {tp: e["ideal_snr"] for tp, e in le["timepoints"].items()}
            for le in patient.truth["lesions"]}
    for le in truth["lesions"]:
        for tp, entry in le["timepoints"].items():
            entry["ideal_snr"] = snrs[le["lesion_id"]][tp]
    (folder / "truth.json").write_text(json.dumps(truth, indent=1))


def _output(work: Path, seed: int, phantom: Path, prior_search: bool, candidates: bool = False,
            model: str | None = None, overrides: dict | None = None) -> Path:
    """The analysis folder of one benchmark run under ``work``."""
    kind = ("prior+candidates" if candidates else "prior") if prior_search else "noprior"
    kind += f"+{Path(model).stem}" if model else ""
    kind += "".join(f"+{k}={v}" for k, v in sorted((overrides or {}).items()))
    return work / f"analysis_s{seed}_{kind}_{phantom.name}"


def bench_demo(seed: int, timepoints: int, registration: str, truth_masks: bool, work: Path | None = None,
               options: dict | None = None, prior_search: bool = True, reuse_from: Path | None = None,
               candidates: bool = False, model: str | None = None, overrides: dict | None = None) -> dict:
    """Analyse one phantom patient in a child process and print its figures. ``reuse_from``: an earlier
    output folder whose stage cache (segmentation, registration) is copied in first, so a comparison run
    re-does only what differs (its time is then not the full analysis time)."""
    import shutil

    work = work or Path(tempfile.mkdtemp(prefix="bench_analysis_"))
    phantom = _phantom(work, seed, timepoints, options or {})
    out = _output(work, seed, phantom, prior_search, candidates, model, overrides)
    if reuse_from is not None:
        keep = work / f"cache-of-{reuse_from.name}"  # reuse_from may be ``out`` itself
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(reuse_from / "cache", keep)
    shutil.rmtree(out, ignore_errors=True)
    if reuse_from is not None:
        out.mkdir(parents=True)
        shutil.move(keep, out / "cache")
    child = subprocess.run([sys.executable, __file__, "--child", str(phantom), str(out),
                            "--registration", registration] + (["--truth-masks"] if truth_masks else [])
                           + ([] if prior_search else ["--no-prior-search"]) + (["--candidates"] if candidates else ["--no-candidates"])
                           + (["--model", model] if model else [])
                           + [f"--param={k}={v}" for k, v in sorted((overrides or {}).items())],
                           capture_output=True, text=True, check=False)
    if child.returncode:
        print(child.stderr[-3000:])
        raise SystemExit(child.returncode)
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    masks = "true lesion masks" if truth_masks else f"model segmentation ({Path(model).name if model else 'shipped'})"
    search = ("with" if prior_search else "without") + (" (+ model candidates)" if candidates else "")
    print(f"seed {seed} analysis ({timepoints} time points, {masks}, registration {registration}, {search} "
          f"prior-guided search): {figures['seconds']:.1f} s, {figures['seconds'] / timepoints:.1f} s per time point "
          f"(demo target 120 s, ratio {figures['seconds'] / 120:.2f}); peak memory {peak_gb:.2f} GB "
          f"(target 4 GB, ratio {peak_gb / 4:.2f})")
    print("time per stage: " + ", ".join(f"{k} {v:.1f} s" for k, v in figures["stage_seconds"].items()))
    print(f"ROIs {figures['rois']}, tracks {figures['tracks']}, truth tracks found "
          f"{figures['truth_tracks_found']}/{figures['truth_tracks']}")
    print(f"categories agree {figures['category_agreement']:.3f} of {figures['pairs']} pairs "
          f"({figures['category_agreement_other']:.3f} had {figures['other_measure']} driven them); heterogeneity "
          f"{figures['heterogeneity_agreement']:.2f}")
    for key, name in (("suv_total", "SUVtotal (SUVmean x volume)"), ("suv_total_pvc", "SUVtotal, PV-corrected")):
        f = figures[key]
        if f["n"]:
            print(f"{name} vs truth, tracks >= 2 mL (n={f['n']}): median |error| {f['median_abs_pct']:.1f} %, "
                  f"within 10 %: {100 * f['within_10pct']:.0f} %")
    _print_longitudinal(figures["longitudinal"])
    _print_confidence(figures["confidence"])
    print(f"outputs in {out}")
    return figures


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _print_longitudinal(f: dict) -> None:
    p, links, reg = f["pairs"], f["links"], f["registration_error_mm"]
    print(f"all true lesion x follow-up pairs: categories agree {_fmt(p['agreement_all'])} of {p['n_all']} "
          f"(target 0.90); lesions >= 0.5 mL {_fmt(p['agreement_large'])} of {p['n_large']} (target 0.97); "
          f"recall of decreasing {_fmt(p['decreasing_recall'])} of {p['n_decreasing']} (target 0.90)")
    q = f["pairs_other"]
    print(f"  had {f['other_measure']} driven the categories: all {_fmt(q['agreement_all'])}, >= 0.5 mL "
          f"{_fmt(q['agreement_large'])}, recall of decreasing {_fmt(q['decreasing_recall'])}")
    d = f["pairs_detectable"]
    print(f"  where a lesion below Rose's limit (expected CNR < 5) may also be called disappearing/new "
          f"({d['n_relabelled']} pairs; {d['n_undetectable']} below it at baseline and follow-up left out): all "
          f"{_fmt(d['agreement_all'])} of {d['n_all']}, >= 0.5 mL {_fmt(d['agreement_large'])} of {d['n_large']}, "
          f"recall of decreasing {_fmt(d['decreasing_recall'])} of {d['n_decreasing']}")
    c, known = f["ceiling"]["search"], f["ceiling"]["known"]
    print(f"ideal-observer ceiling (the best any detector can do; whole-body search at d' >= {c['blind_d']:.2f} for "
          f"{f['ceiling']['body_ml'] / 1000:.0f} L of body, a known location at d' >= {c['known_d']:.2f}): all "
          f"{_fmt(c['ceiling_all'])}, >= 0.5 mL {_fmt(c['ceiling_large'])}, decreasing {_fmt(c['ceiling_decreasing'])}"
          f"; every location known: {_fmt(known['ceiling_all'])}, {_fmt(known['ceiling_large'])}, "
          f"{_fmt(known['ceiling_decreasing'])}")
    print(f"  on the pairs within the ceiling the analysis agrees: all {_fmt(c['agreement_achievable_all'])} of "
          f"{c['n_achievable_all']}, >= 0.5 mL {_fmt(c['agreement_achievable_large'])} of {c['n_achievable_large']}, "
          f"decreasing {_fmt(c['agreement_achievable_decreasing'])} of {c['n_achievable_decreasing']}")
    print(f"detection at follow-ups of lesions present earlier {_fmt(p['detection_follow_up'])} of {p['n_follow_up']} "
          f"(>= 0.5 mL {_fmt(p['detection_follow_up_large'])} of {p['n_follow_up_large']}); first detections "
          f"{_fmt(p['detection_first'])} of {p['n_first']} (>= 0.5 mL {_fmt(p['detection_first_large'])} of "
          f"{p['n_first_large']})")
    fp = p["false_positives"]
    print("false-positive ROIs per scan " + f"{fp['per_scan']:.2f} (target 1; " +
          ", ".join(f"{k.removeprefix('per_scan_')} {v:.2f}" for k, v in fp.items() if k != "per_scan") + ")" +
          ("; where: " + ", ".join(f"{k} {v}" for k, v in f["false_positive_sites"].items())
           if f["false_positive_sites"] else ""))
    print(f"links: precision {links['precision']:.3f}, recall (found ROIs) {links['recall_detectable']:.3f}, "
          f"F1 {links['f1']:.3f} (target 0.97); split/merge tracks exact {links['split_merge_correct']:.0f}/"
          f"{links['n_split_merge']:.0f}")
    print(f"prior-guided: {f['searches']} searches, {f['searches_found']} found ({f['found_by_model']} by model "
          f"evidence), {f['candidates_confirmed']} model candidates confirmed; ROIs by source {f['roi_sources']}")
    if reg["n"]:
        print(f"registration error at true lesion centres (n={reg['n']}): mean {reg['mean']:.2f} mm, "
              f"95th percentile {reg['p95']:.2f} mm, max {reg['max']:.2f} mm")
    print("category confusions (truth->measured): " + (", ".join(f"{k} {v}" for k, v in f["confusions"].items())
                                                       or "none"))


def _print_confidence(f: dict) -> None:
    c, q = f["calibration"], f["queue"]
    print(f"DeltaSUVtotal intervals ({100 * c['level']:.0f} %): cover {_fmt(c['coverage'])} of {c['n']} true changes "
          f"(target 0.85-0.95); wrong calls: indeterminate {_fmt(c['wrong_indeterminate'])} of {c['n_indeterminate']}, "
          f"confident {_fmt(c['wrong_confident'])} of {c['n_confident']} (target: indeterminate >= 3x confident)")
    curve = ", ".join(f"{100 * p['fraction']:.0f} % {_fmt(p['captured'])} (ceiling {_fmt(p['ceiling'])})"
                      for p in q["curve"])
    print(f"review queue: {q['wrong']} of {q['tracks']} tracks wrong ({', '.join(f'{k} {v}' for k, v in f['errors'].items())}); "
          f"share of them in the top of the queue: {curve} (target: top 20 % >= 0.70)")


def _overrides(items: list[str]) -> dict:
    """``section.name=VALUE`` strings as settings (LesionResponseLib.config), each value parsed as its type."""
    from LesionResponseLib.config import ConfigError, find_setting

    out = {}
    for item in items:
        path, _, text = item.partition("=")
        try:
            out[path] = find_setting(path).coerce(text)
        except ConfigError as err:
            raise SystemExit(f"--param {item}: {err}") from None
    return out


def _seeds(text: str) -> list[int]:
    if "-" in text:
        low, high = (int(v) for v in text.split("-"))
        return list(range(low, high + 1))
    return [int(v) for v in text.split(",")]


def main() -> None:
    from LesionResponseLib.config import AnalysisParameters

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", help="several patients, e.g. 4300-4301 or 4300,4305 (overrides --seed)")
    parser.add_argument("--timepoints", type=int, default=4)
    parser.add_argument("--registration", default="auto")
    parser.add_argument("--truth-masks", action="store_true", help="use the phantom's true lesion masks "
                                                                   "instead of the segmentation model")
    add_phantom_options(parser)
    parser.add_argument("--no-prior-search", action="store_true", help="analyse without the prior-guided search")
    parser.add_argument("--model", help="segmentation model file (default: the shipped model)")
    parser.add_argument("--candidates", action=argparse.BooleanOptionalAction,
                        default=AnalysisParameters().prior_search.candidates,
                        help="confirm model candidates (prior_search.candidates; default: off)")
    parser.add_argument("--param", action="append", default=[], metavar="SECTION.NAME=VALUE",
                        help="set any setting, e.g. --param segmentation.equivocal_max_volume_ml=0 (repeatable)")
    parser.add_argument("--compare", action="store_true", help="analyse each patient without, then with the "
                        "prior-guided search (the second run reuses the first one's segmentation and registration)")
    parser.add_argument("--work", type=Path, help="folder for (reused) phantoms and outputs")
    parser.add_argument("--skip-measure", action="store_true", help="skip the measure_rois micro-benchmark")
    parser.add_argument("--reuse-cache", action="store_true", help="start from the stage cache of this patient's "
                        "earlier output in --work (only changed stages re-run; the time is then not a full analysis)")
    parser.add_argument("--pool", action="store_true", help="analyse nothing: print the interval and review-queue "
                        "figures pooled over every patient analysed under --work")
    parser.add_argument("--child", nargs=2, metavar=("PHANTOM", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides = _overrides(args.param)
    if args.child:
        run_demo(Path(args.child[0]), Path(args.child[1]), args.registration, args.truth_masks,
                 prior_search=not args.no_prior_search, candidates=args.candidates, model=args.model,
                 overrides=overrides)
        return
    if args.pool:
        if args.work is None:
            raise SystemExit("--pool needs --work (the folder of earlier runs)")
        pooled = pooled_confidence(args.work)
        print(f"pooled over {len(pooled['patients'])} patients: {', '.join(pooled['patients'])}")
        _print_confidence(pooled)
        return
    if not args.skip_measure:
        bench_measure()
    options = phantom_options(args)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_analysis_"))
    for seed in _seeds(args.seeds) if args.seeds else [args.seed]:
        run = dict(seed=seed, timepoints=args.timepoints, registration=args.registration,
                   truth_masks=args.truth_masks, work=work, options=options, model=args.model, overrides=overrides)
        if args.compare:
            bench_demo(**run, prior_search=False)
            phantom = _phantom(work, seed, args.timepoints, options)
            bench_demo(**run, prior_search=True, candidates=args.candidates,
                       reuse_from=_output(work, seed, phantom, prior_search=False, model=args.model))
        else:
            phantom = _phantom(work, seed, args.timepoints, options)
            prior = not args.no_prior_search
            earlier = [_output(work, seed, phantom, prior, args.candidates, args.model, overrides)] + [
                _output(work, seed, phantom, kind, model=m) for m in (args.model, None)
                for kind in (prior, not prior)]  # the same kind first; stages keyed on what differs re-run
            earlier = [d for d in earlier if (d / "cache").is_dir()] if args.reuse_cache else []
            bench_demo(**run, prior_search=prior, reuse_from=earlier[0] if earlier else None,
                       candidates=args.candidates)


if __name__ == "__main__":
    main()
