"""Benchmark of the reference regions, lesion sites and tumour burden (issue 33) against the phantom's truth.

Per patient (generated once under ``--work``, analysed once with the default settings - model segmentation,
registration ``auto``, prior-guided search - or with the true lesion masks, ``--truth-masks``):

1. **Reference regions** per time point and organ: placed or not, the share of the sphere inside the true organ
   (``truth/tp{k}_organs.nii.gz``) and its SUVmean's error against the organ's true uptake at that scan
   (``truth.json`` ``organ_suv``). Target: inside on every patient, |error| ≤ 5 %.
2. **Burden** per time point: Σ volume, Σ SUVtotal and Σ PV-corrected SUVtotal of the accepted ROIs against the
   true lesions' Σ volume and Σ SUVtotal, set beside the single-lesion error on the same patients (true lesions
   ≥ 2 mL whose ROIs are their own, ``analysis.truth.single_lesion_errors``: the partial-volume error the
   documentation states, e.g. PV-corrected SUVtotal within 10 % for ~80 %). The error split into its sources (``analysis.truth.burden_error_parts``):
   the contour/partial-volume error of the ROIs matched to true lesions against those lesions' truth, the truth
   in lesions no ROI found (detection) and the false-positive ROIs' share.
3. **Sites** of the accepted ROIs ≥ 0.5 mL overlapping a true lesion (``analysis.truth.site_agreement``). Target:
   ≥ 95 % right.
4. CPU time of the organs, reference regions and sites per time point (``time.process_time``, one thread).

Seeds: 4460-4462, 4480-4485 and 4600-4605 development (the rules were written and changed while looking at them); 4620-4625
and 4626-4631 strictly held out (each generated and analysed with ``--prepare``, then evaluated once).

Run: ``nice -n 5 .venv/bin/python benchmarks/bench_burden.py --seeds 4626-4631 --timepoints 3 --work DIR`` (phantom options:
``--near-organs 0.3``, ``--small-lesions``, ...; ``--truth-masks``; ``--reuse``: evaluate the analyses already in
DIR, the organs, reference regions and sites recomputed by this checkout).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench_analysis import _phantom, _seeds  # noqa: E402
from phantom_options import add_phantom_options, options_key, phantom_options  # noqa: E402


def analyse(phantom: Path, out: Path, truth_masks: bool) -> None:
    """Analyse the phantom into ``out`` (a second run reuses the stage cache: segmentation, registration, matching
    and search; the organs, reference regions and sites are computed again unless their inputs are unchanged)."""
    from LesionResponseLib.config import AnalysisParameters
    from LesionResponseLib.workflow import run_pipeline

    params = AnalysisParameters().updated({"segmentation.method": "truth"}) if truth_masks else None
    start = time.perf_counter()
    run_pipeline(phantom / "dicom", out, params, labels_dir=phantom / "truth" if truth_masks else None)
    print(f"  analysis of {phantom.name}: {time.perf_counter() - start:.0f} s wall")


def remeasure(phantom: Path, out: Path):
    """The analysis in ``out`` with its organs, reference regions and lesion sites computed again by this checkout
    (from its label maps, the DICOM and the cached physiological map), and the CPU seconds of that per time point
    (organs + reference regions + sites; images read before the clock starts). With ``--reuse`` this is what
    evaluates an analysis made by an earlier checkout whose segmentation is still valid; after a fresh analysis it
    must equal analysis.json (printed)."""
    import SimpleITK as sitk

    from LesionResponseLib.analysis import load_analysis
    from LesionResponseLib.analysis.reference_regions import place_reference_regions
    from LesionResponseLib.analysis.sites import lesion_sites
    from LesionResponseLib.dicomio import find_timepoints, load_timepoint
    from LesionResponseLib.segmentation.model import load_model
    from LesionResponseLib.segmentation.organs import find_organs

    analysis = load_analysis(out)
    saved = ([r.to_dict() for r in analysis.reference_regions], [(r.roi_id, r.site) for r in analysis.rois])
    threshold = load_model(analysis.parameters.segmentation.model_path).config.physiological_threshold
    seconds, regions = [], []
    for info in find_timepoints(phantom / "dicom").timepoints:
        tp = load_timepoint(info)
        labels = sitk.ReadImage(str(out / "labels" / f"tp{info.index}.nii.gz"))
        physiological = _physiological_map(out, tp.pet_suv)
        start = time.process_time()
        organs = find_organs(tp.pet_suv, tp.ct, physiological, threshold)
        regions += place_reference_regions(tp.pet_suv, labels, organs, info.index, analysis.parameters)
        sites = lesion_sites(labels, organs) if tp.ct is not None and organs.found else {}
        seconds.append(time.process_time() - start)
        for roi in analysis.rois:
            if roi.timepoint == info.index and roi.site_source != "reader":
                roi.site = sites.get(roi.label, "")
    analysis.reference_regions = regions
    same = saved == ([r.to_dict() for r in regions], [(r.roi_id, r.site) for r in analysis.rois])
    print(f"  reference regions and sites recomputed by this checkout {'equal' if same else 'DIFFER from'} "
          "analysis.json")
    return analysis, seconds


def _physiological_map(out: Path, pet):
    """The cached physiological map of the scan on ``pet``'s grid (None with the true masks)."""
    import numpy as np
    import SimpleITK as sitk

    for path in sorted((out / "cache").glob("seg-*-physiological.nii.gz")):
        image = sitk.ReadImage(str(path))
        if image.GetSize() == pet.GetSize() and np.allclose(image.GetOrigin(), pet.GetOrigin()):
            return sitk.GetArrayFromImage(image)
    return None


def evaluate(analysis, phantom: Path, out: Path) -> dict:
    from LesionResponseLib.analysis.truth import (
        burden_agreement,
        burden_error_parts,
        reference_agreement,
        single_lesion_errors,
        site_agreement,
    )

    return {"references": reference_agreement(analysis, phantom), "burden": burden_agreement(analysis, phantom),
            "burden_parts": burden_error_parts(analysis, out, phantom), "sites": site_agreement(analysis, out, phantom),
            "lesions": single_lesion_errors(analysis, out, phantom)}


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


def report(seed: int, figures: dict, cpu: list[float]) -> None:
    print(f"\nseed {seed}")
    for r in figures["references"]:
        if r["placed"]:
            print(f"  TP{r['timepoint']} {r['organ']:6s} inside true organ {100 * r['truth_organ_share']:5.1f} %  "
                  f"SUVmean {r['suv_mean']:6.2f} vs true {r['true_suv']:6.2f}  error {_fmt(r['error_pct'])} %")
        else:
            print(f"  TP{r['timepoint']} {r['organ']:6s} NOT PLACED: {'; '.join(r['warnings'])}")
    for b in figures["burden"]:
        print(f"  TP{b['timepoint']} lesions {b['n_rois']:3d}/{b['n_true']:3d} true; volume {b['volume_ml']:7.1f} vs "
              f"{b['true_volume_ml']:7.1f} mL ({_fmt(b['volume_error_pct'])} %); ΣSUVtotal {b['suv_total']:7.0f} "
              f"({_fmt(b['suv_total_error_pct'])} %), PV-corrected {b['suv_total_pvc']:7.0f} "
              f"({_fmt(b['suv_total_pvc_error_pct'])} %) vs true {b['true_suv_total']:7.0f}")
    for p in figures["burden_parts"]:
        print(f"  TP{p['timepoint']} error parts: {p['n_matched_lesions']} matched lesions, contour error volume "
              f"{_fmt(p['volume_contour_pct'])} %, ΣSUVtotal {_fmt(p['suv_total_contour_pct'])} %, PV-corrected "
              f"{_fmt(p['suv_total_pvc_contour_pct'])} %; missed {_fmt(-p['suv_total_missed_pct'])} % of the true "
              f"ΣSUVtotal ({_fmt(-p['volume_missed_pct'])} % volume); {p['n_false_positive_rois']} false-positive "
              f"ROIs {_fmt(p['suv_total_false_positive_pct'])} % (PV-corrected "
              f"{_fmt(p['suv_total_pvc_false_positive_pct'])} %, volume {_fmt(p['volume_false_positive_pct'])} %)")
    s = figures["sites"]
    print(f"  sites: {s['right']} of {s['n']} ROIs ≥ 0.5 mL right" + "".join(
        f"\n    {e['roi_id']} {e['volume_ml']:.1f} mL: truth {e['truth']}, rule {e['measured'] or '(none)'}"
        for e in s["errors"]))
    print(f"  CPU s per time point (organs + references + sites): {', '.join(f'{c:.2f}' for c in cpu)}")


def summary(all_figures: dict[int, dict]) -> None:
    refs = [r for f in all_figures.values() for r in f["references"]]
    placed = [r for r in refs if r["placed"]]
    inside = [r for r in placed if r["truth_organ_share"] >= 0.999]
    within = [r for r in placed if abs(r["error_pct"]) <= 5.0]
    print(f"\nreference regions: {len(placed)} of {len(refs)} placed; entirely inside the true organ {len(inside)}; "
          f"SUVmean within 5 % of the true uptake {len(within)} "
          f"(|error| median {statistics.median(abs(r['error_pct']) for r in placed):.1f} %, "
          f"max {max(abs(r['error_pct']) for r in placed):.1f} %)" if placed else "\nno reference region placed")
    for organ in ("liver", "spleen"):
        errors = [r["error_pct"] for r in placed if r["organ"] == organ]
        if errors:
            print(f"  {organ}: error mean {statistics.mean(errors):+.2f} %, range {min(errors):+.1f} to "
                  f"{max(errors):+.1f} % over {len(errors)}")
    burden = [b for f in all_figures.values() for b in f["burden"] if b["true_suv_total"] > 0]
    lesions = [e for f in all_figures.values() for e in f["lesions"]]
    for rows, label, unit in ((burden, "burden", "time points"), (lesions, "single lesions ≥ 2 mL (the stated error)",
                                                                  "lesion × scans")):
        for key in ("volume_error_pct", "suv_total_error_pct", "suv_total_pvc_error_pct"):
            values = [row[key] for row in rows]
            if values:
                within = sum(abs(v) <= 10.0 for v in values)
                print(f"{label} {key}: median {statistics.median(values):+.1f} %, |error| median "
                      f"{statistics.median(abs(v) for v in values):.1f} %, range {min(values):+.1f} to "
                      f"{max(values):+.1f} %, within 10 %: {within} of {len(values)} {unit} "
                      f"({100 * within / len(values):.0f} %)")
    parts = [p for f in all_figures.values() for p in f["burden_parts"] if p["suv_total_contour_pct"] is not None]
    for key in ("volume_contour_pct", "suv_total_contour_pct", "suv_total_pvc_contour_pct", "suv_total_missed_pct",
                "suv_total_false_positive_pct", "suv_total_pvc_false_positive_pct"):
        values = [p[key] for p in parts]
        if values:
            print(f"burden parts {key}: median {statistics.median(values):+.1f} %, range {min(values):+.1f} to "
                  f"{max(values):+.1f} %, |value| ≤ 10 %: {sum(abs(v) <= 10.0 for v in values)} of {len(values)}")
    right = sum(f["sites"]["right"] for f in all_figures.values())
    n = sum(f["sites"]["n"] for f in all_figures.values())
    print(f"sites: {right} of {n} ROIs ≥ 0.5 mL right ({100 * right / max(n, 1):.1f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", required=True, help="e.g. 4480-4485 or 4480,4483")
    parser.add_argument("--timepoints", type=int, default=3)
    parser.add_argument("--truth-masks", action="store_true", help="the phantom's true lesion masks as ROIs")
    parser.add_argument("--work", type=Path, required=True, help="folder for (reused) phantoms and outputs")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--reuse", action="store_true", help="evaluate an existing analysis in the work folder "
                        "(its segmentation, registration and tracks) instead of analysing again; the organs, "
                        "reference regions and sites are always recomputed by this checkout")
    parser.add_argument("--prepare", action="store_true", help="only generate and analyse (no figures: for held-out "
                        "patients before the rules are final)")
    add_phantom_options(parser)
    args = parser.parse_args()
    options = phantom_options(args)
    all_figures = {}
    for seed in _seeds(args.seeds):
        phantom = _phantom(args.work, seed, args.timepoints, options)
        out = args.work / f"burden_s{seed}_{'truth' if args.truth_masks else 'model'}_{phantom.name}"
        if not (args.reuse and (out / "analysis.json").is_file()):
            analyse(phantom, out, args.truth_masks)
        if args.prepare:
            continue
        analysis, cpu = remeasure(phantom, out)
        all_figures[seed] = evaluate(analysis, phantom, out)
        report(seed, all_figures[seed], cpu)
    if all_figures:
        summary(all_figures)
    if args.json:
        args.json.write_text(json.dumps(all_figures, indent=1, default=str))
    print(f"\noptions: {options_key(options) or 'default'}; masks: {'truth' if args.truth_masks else 'model'}")


if __name__ == "__main__":
    main()
