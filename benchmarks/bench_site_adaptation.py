"""A site's own scans: the shipped model against models fine-tuned on N reviewed patients of an unseen domain.

The domain is ``phantom.domain.DOMAINS["site-b"]`` (docs/site-adaptation.md): 3 mm PET voxels at 4.5-5 mm FWHM
with correlated (7 mm) noise, textured organs, higher liver, spleen, bowel and pancreas uptake, lobulated lesions
and necrotic lesions with rim uptake. The shipped model never saw any of it.

Stages (each cached under ``--work``; a later run reuses what exists):

1. ``generate``: phantom patients of the domain - training seeds (5000-5099, fine-tuned on) and evaluation seeds
   (4500-4599, held out: never reviewed, never trained on, never looked at before their run), ``--timepoints``
   scans each, a ``--axial-extent-mm`` slab over the upper abdomen (liver, spleen, kidneys, adrenals, pancreas,
   bowel: where the domain's organ uptake and most lesions are; a slab costs a third of a whole body).
2. ``analyse-train``: ``analyze`` of the training patients with the shipped model (default settings).
3. ``review``: each training analysis reviewed *as a reader would*, through the review session, with the
   reader's tools (``LesionResponseReview.masks``): a ROI on no true lesion is rejected; a true lesion visible
   to a reader (expected peak CNR >= 5, Rose's criterion, ``segmentation.metrics.expected_peak_cnr``) that no ROI
   covers is added by a click on it (``masks.grow`` at 40 % of the hot spot's SUVmax, raised to 50, 60, 70 % as a
   reader raises the app's threshold while the ROI leaks into the organ around it), kept only when most of the
   grown ROI lies on that lesion; when no threshold gives such a ROI the reader paints the lesion with the sphere
   brush (``masks.paint``; centre, radius and SUV floor judged from the PET: :func:`_brush_as_judged`), kept on the
   same condition; a ROI whose contour misses its lesion (Dice < 0.5) is re-thresholded (``masks.rethreshold``) when
   that fits the lesion better. No true mask is copied: the truth only says where a visible lesion is and whether
   the reader's own ROI lies mostly on it (the reader's eyes).
4. ``train``: ``train --from-analyses`` (``segmentation.finetune.fine_tune``) on the first N reviewed training
   patients for each N of ``--sizes`` (its default 25 % patient hold-out inside the N), ``--steps`` steps,
   ``--threads`` torch threads; wall and CPU seconds recorded.
5. ``analyse-eval``: ``analyze`` of the evaluation patients with the shipped model and each fine-tuned model
   (``--model``; registrations and organ maps reused from the shipped model's run: they do not depend on the model).
6. ``figures``: per model, over the evaluation patients, what ``lesion-response evaluate OUT --reference PHANTOM``
   computes (``report.evaluation.evaluation_figures``): lesion F1, sensitivity, false-positive ROIs per scan,
   median Dice and SUVtotal agreement of matched lesions, category agreement over all true lesion x follow-up
   pairs, pooled and per patient; training wall and CPU seconds. JSON to ``--work/figures.json``.

Run with ``nice -n 5`` on a shared machine. The figures in docs/site-adaptation.md::

    nice -n 5 python benchmarks/bench_site_adaptation.py --work /tmp/bench-reader --threads 1 --sizes 2 4 8
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "LesionResponse"))

READER = "simulated-reader"
ROSE_CNR = 5.0  # a reader sees a lesion whose expected peak contrast-to-noise ratio reaches Rose's criterion
REDRAW_DICE = 0.5  # a contour with less overlap than this with its lesion is visibly wrong to a reader
GROW_FRACTIONS = (0.4, 0.5, 0.6, 0.7)  # of the hot spot's SUVmax: the app's default, then raised while it leaks
BACKGROUND_SHELL_MM = (15.0, 30.0)  # around a hot spot, what a reader takes for its surroundings: beyond 3 FWHM of
# the domain's 4.5-5 mm PET (the blur of a sub-millilitre lesion, the kind the model misses, has faded) and within
# the organ it sits in (a liver or spleen is several cm across)


def _seeds(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def generate(work: Path, seeds: list[int], timepoints: int, extent: float, domain: str) -> dict[int, Path]:
    """The domain's phantom patients (generated once)."""
    from LesionResponseLib.phantom import generate_patient
    from LesionResponseLib.phantom.domain import domain_named

    folders = {}
    for seed in seeds:
        folder = work / "phantoms" / f"{domain}_s{seed}_t{timepoints}_z{extent:g}"
        if not (folder / "truth.json").is_file():
            start = time.process_time()
            generate_patient(folder, seed=seed, timepoints=timepoints, axial_extent_mm=extent, extras=False,
                             domain=domain_named(domain))
            print(f"phantom {seed}: {time.process_time() - start:.1f} CPU s", flush=True)
        folders[seed] = folder
    return folders


def analyse(phantom: Path, out: Path, model: Path | None, registrations_from: Path | None = None) -> Path:
    """``analyze`` with default settings and ``model`` (None: the shipped one); done once."""
    from LesionResponseLib.config import AnalysisParameters
    from LesionResponseLib.workflow import run_pipeline

    if (out / "analysis.json").is_file():
        return out
    if registrations_from is not None:  # the registrations and the CT's organ maps do not depend on the model
        (out / "cache").mkdir(parents=True, exist_ok=True)
        for pattern in ("reg-*", "organs-*"):
            for path in (registrations_from / "cache").glob(pattern):
                shutil.copy2(path, out / "cache" / path.name)
    start = time.process_time()
    params = AnalysisParameters().updated({"segmentation.model_path": str(model) if model else None})
    run_pipeline(phantom / "dicom", out, params)
    print(f"analysed {out.name}: {time.process_time() - start:.1f} CPU s (this process)", flush=True)
    return out


def review_as_reader(out: Path, phantom: Path) -> dict[str, int]:
    """Review ``out`` as a reader would (module docstring, stage 3); the edit counts."""
    from LesionResponseReview.masks import MaskError, rethreshold

    from LesionResponseLib.analysis.truth import roi_truth_labels, tiny_labels
    from LesionResponseLib.phantom import load_truth
    from LesionResponseLib.review import ReviewSession
    from LesionResponseLib.review.edits import RejectRois
    from LesionResponseLib.segmentation.metrics import expected_peak_cnr

    if (out / "review" / "session.json").is_file():
        return json.loads((out / "review" / "reader.json").read_text())
    truth = load_truth(phantom)
    lesion_of = {(int(tp), int(v)): le for le in truth["lesions"] for tp, e in le["timepoints"].items()
                 for v in e["labels"]}
    counts: Counter = Counter()
    with ReviewSession.open(out, READER, autosave=False) as session:
        for k in range(int(truth["n_timepoints"])):
            true = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom / "truth" / f"tp{k}_lesions.nii.gz")))
            pet = session.suv(k)
            suv = sitk.GetArrayViewFromImage(pet)
            accepted = {r.label: r for r in session.state.analysis.rois if r.timepoint == k and r.status == "accepted"}
            labels = np.where(np.isin(session.state.label_array(k), list(accepted)), session.state.label_array(k), 0)
            owner = roi_truth_labels(labels, true, tiny_labels(truth, k))
            wrong = [roi.roi_id for label, roi in accepted.items() if label not in owner]
            if wrong:  # selected together and rejected at once, as the app's "reject" of several ROIs
                session.apply(RejectRois(wrong, "not a lesion"))
                counts["rejected"] += len(wrong)
            for label, roi in accepted.items():
                if label not in owner:
                    continue
                lesion = true == owner[label]
                before = _dice(labels == label, lesion)
                if before < REDRAW_DICE:
                    try:
                        redrawn = rethreshold(pet, session.state.labels[k], label)
                    except MaskError:
                        continue
                    if _dice(sitk.GetArrayViewFromImage(redrawn.mask) > 0, lesion) > before:
                        session.edit_roi(roi.roi_id, redrawn.mask)
                        counts["redrawn"] += 1
            psf = float(truth["timepoints"][k]["psf_fwhm_mm"])  # the truth's, for what a reader can see
            stated_psf = session.state.analysis.parameters.quantification.psf_fwhm_mm  # what the app states
            for value in sorted(set(np.unique(true[true > 0]).tolist()) - set(owner.values())):
                entry = lesion_of[(k, value)]["timepoints"][str(k)]
                cnr = expected_peak_cnr(suv, true, [value], true_suv_max=entry["suv_max"],
                                        volume_ml=entry["volume_ml"], spacing_mm=min(pet.GetSpacing()),
                                        recon_fwhm_mm=psf)
                if cnr < ROSE_CNR:
                    counts["invisible"] += 1
                    continue
                centre = np.argwhere(true == value).mean(0)
                point = pet.TransformContinuousIndexToPhysicalPoint(tuple(float(c) for c in centre[::-1]))
                how, mask = _add_on(pet, session.state.labels[k], point, true, value, psf_fwhm_mm=stated_psf)
                counts[how] += 1
                if mask is not None:
                    session.add_roi(k, mask)
        session.save()
    (out / "review" / "reader.json").write_text(json.dumps(counts))
    return dict(counts)


def _add_on(pet: sitk.Image, labels: sitk.Image, point, true: np.ndarray, value: int, *, psf_fwhm_mm: float
            ) -> tuple[str, sitk.Image | None]:
    """The reader's ROI for the lesion seen at ``point``: grown from a click at the first threshold of
    :data:`GROW_FRACTIONS` whose ROI lies mostly on true lesion ``value``, else painted with the sphere brush
    (:func:`_brush_as_judged`) when that lies mostly on it; ("grown" | "painted" | "not added", mask or None)."""
    from LesionResponseReview.masks import MaskError, grow, paint

    for fraction in GROW_FRACTIONS:
        try:
            grown = grow(pet, labels, point, fraction=fraction)
        except MaskError:
            break
        if _mostly_on(grown.mask, true, value):
            return "grown", grown.mask
    try:
        centre, radius, floor = _brush_as_judged(pet, labels, point, psf_fwhm_mm)
        painted = paint(pet, labels, centre, radius_mm=radius, min_suv=floor)
    except MaskError:
        return "not added", None
    return ("painted", painted.mask) if _mostly_on(painted.mask, true, value) else ("not added", None)


def _mostly_on(mask: sitk.Image, true: np.ndarray, value: int) -> bool:
    """Whether most voxels of ``mask`` lie on true lesion ``value`` (the truth standing in for the reader's eyes
    judging their own ROI on the screen)."""
    inside = true[sitk.GetArrayViewFromImage(mask) > 0]
    return bool(inside.size) and int(np.bincount(inside).argmax()) == value


def _brush_as_judged(pet: sitk.Image, labels: sitk.Image, point, psf_fwhm_mm: float
                     ) -> tuple[tuple[float, ...], float, float]:
    """Centre (LPS mm), radius (mm) and SUV floor of the brush a reader would choose for the hot spot at ``point``,
    from the PET alone. Centre: the hottest free voxel within ``masks.SEARCH_RADIUS_MM`` (as the click tool finds
    it). Floor: half-way between that peak and the surrounding background (the median SUV
    :data:`BACKGROUND_SHELL_MM` from the peak). Radius: where the mean SUV of shells around the peak falls to the
    floor (interpolated between shells), less the blur the reader knows the scanner adds: the half-way width of a
    blurred object is about its own and the PSF's half width added in quadrature (Gaussian widths), so a spot at
    the resolution limit is painted as its peak voxel, not as its halo; an object much larger than the PSF keeps
    its half-way edge, where a blurred edge crosses half-way."""
    from LesionResponseReview.masks import SEARCH_RADIUS_MM, hottest_near

    suv, label_array = sitk.GetArrayViewFromImage(pet), sitk.GetArrayViewFromImage(labels)
    spacing = np.asarray(pet.GetSpacing()[::-1])
    zyx = pet.TransformPhysicalPointToIndex(tuple(float(c) for c in point))[::-1]
    peak_index = np.asarray(hottest_near(suv, pet.GetSpacing(), zyx, SEARCH_RADIUS_MM, label_array == 0))
    half = np.ceil(BACKGROUND_SHELL_MM[1] / spacing).astype(int)
    box = tuple(slice(max(c - h, 0), min(c + h + 1, n)) for c, h, n in zip(peak_index, half, suv.shape, strict=True))
    offsets = np.indices(suv[box].shape).reshape(3, -1).T + [b.start for b in box] - peak_index
    distance = np.sqrt(((offsets * spacing) ** 2).sum(1))
    values = suv[box].ravel()
    peak = float(suv[tuple(peak_index)])
    shell = (distance >= BACKGROUND_SHELL_MM[0]) & (distance <= BACKGROUND_SHELL_MM[1])
    floor = 0.5 * (peak + float(np.median(values[shell])))
    step = spacing.min() / 2  # rings half a voxel wide: each holds the voxels of about one distance
    rings = [(distance >= inner) & (distance < inner + step) for inner in np.arange(0.0, BACKGROUND_SHELL_MM[0], step)]
    profile = [(float(distance[r].mean()), float(values[r].mean())) for r in rings if r.any()]
    apparent = profile[-1][0]
    for (d_in, v_in), (d_out, v_out) in pairwise(profile):
        if v_out < floor:
            apparent = d_in + (v_in - floor) / (v_in - v_out) * (d_out - d_in)
            break
    radius = float(np.sqrt(max(apparent**2 - (psf_fwhm_mm / 2) ** 2, 0.0)))
    centre = pet.TransformIndexToPhysicalPoint(tuple(int(c) for c in peak_index[::-1]))
    return centre, max(radius, float(spacing.min()) / 2), floor


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def train(work: Path, reviewed: list[Path], size: int, steps: int, threads: int) -> Path:
    """The model fine-tuned on the first ``size`` reviewed patients (trained once)."""
    from LesionResponseLib.segmentation.finetune import fine_tune

    out = work / "models" / f"site_n{size}.pt"
    if out.is_file() and not out.with_name(out.name + ".checkpoint.pt").exists():
        return out
    start = time.process_time()
    resume = out.with_name(out.name + ".checkpoint.pt").exists()
    fine_tune(out, reviewed[:size], steps=steps, num_threads=threads, resume=resume,
              on_stage=lambda stage: print(f"N={size}: {stage}", flush=True))
    print(f"N={size}: fine-tuned in {time.process_time() - start:.1f} CPU s (whole command)", flush=True)
    return out


def figures(analyses: dict[int, Path], phantoms: dict[int, Path]) -> dict:
    """Per patient and pooled over the evaluation patients, what ``lesion-response evaluate OUT --reference
    PHANTOM`` computes (``report.evaluation.evaluation_figures``, the phantom's truth as the reference): lesion
    detection (sensitivity, precision, F1, false-positive ROIs per scan), Dice of matched lesions, SUVtotal agreement
    (Bland-Altman of the percentage difference) and category agreement over all true lesion x follow-up pairs."""
    from LesionResponseLib.analysis import load_analysis
    from LesionResponseLib.analysis.truth import Reference, bland_altman
    from LesionResponseLib.report.evaluation import evaluation_figures

    per, totals, matched = {}, Counter(), []
    for seed, out in analyses.items():
        f = evaluation_figures(load_analysis(out), out, Reference.from_phantom(phantoms[seed]))
        d, c = f["detection"], f["categories"]
        per[seed] = {"f1": d["f1"], "sensitivity": d["sensitivity"], "precision": d["precision"],
                     "false_positives_per_scan": d["false_positives_per_scan"],
                     "dice_median": f["contours"]["dice_median"], "suv_total_bias": f["measures"]["suv_total"]["bias"],
                     "category_agreement_all": c["agreement_all"], "n_pairs": c["n_all"],
                     "category_agreement_tracks": c["track_agreement"]}
        matched += f["matched"]
        for key in ("n_reference", "n_detected", "n_reference_large", "n_detected_large", "n_rois",
                    "n_true_positive_rois"):
            totals[key] += d[key]
        totals["scans"] += len(d["timepoints"])
        totals["pairs"] += c["n_all"]
        totals["pairs_agree"] += round((c["agreement_all"] or 0) * c["n_all"])
        totals["pairs_large"] += c["n_large"]
        totals["pairs_large_agree"] += round((c["agreement_large"] or 0) * c["n_large"])
    sensitivity = totals["n_detected"] / totals["n_reference"] if totals["n_reference"] else 0.0
    precision = totals["n_true_positive_rois"] / totals["n_rois"] if totals["n_rois"] else 0.0
    suv_total = bland_altman(matched, "suv_total")
    dice = [m["dice"] for m in matched]
    return {"patients": per, "pooled": {
        "sensitivity": sensitivity, "precision": precision,
        "f1": 2 * sensitivity * precision / (sensitivity + precision) if sensitivity + precision else 0.0,
        "sensitivity_large": totals["n_detected_large"] / totals["n_reference_large"]
        if totals["n_reference_large"] else None,
        "false_positives_per_scan": (totals["n_rois"] - totals["n_true_positive_rois"]) / max(1, totals["scans"]),
        "dice_median": float(np.median(dice)) if dice else None, "matched": len(dice),
        "suv_total_agreement": {k: v for k, v in suv_total.items() if k not in ("means", "differences")},
        "category_agreement_all": totals["pairs_agree"] / totals["pairs"] if totals["pairs"] else None,
        "n_pairs": totals["pairs"],
        "category_agreement_large": totals["pairs_large_agree"] / totals["pairs_large"] if totals["pairs_large"]
        else None, "n_pairs_large": totals["pairs_large"],
        "lesions": totals["n_reference"], "scans": totals["scans"]}}


def domain_figure(path: Path, domain: str, seed: int = 5101) -> None:
    """``docs/images/site-b-domain.png``: one axial slice of development patient ``seed``, default and ``domain``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from LesionResponseLib.phantom import simulate_patient
    from LesionResponseLib.phantom.domain import domain_named

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.6))
    height = None
    for ax, options in zip(axes, (None, domain_named(domain)), strict=True):
        scan = simulate_patient(seed, timepoints=1, with_ct=False, axial_extent_mm=300, domain=options).timepoints[0]
        pet, labels = sitk.GetArrayFromImage(scan.pet_suv), sitk.GetArrayFromImage(scan.lesion_labels)
        if height is None:  # the slice with most lesion voxels, then the same height on the other grid
            height = scan.pet_suv.TransformIndexToPhysicalPoint((0, 0, int(np.argmax((labels > 0).sum((1, 2))))))[2]
        z = int(round(scan.pet_suv.TransformPhysicalPointToContinuousIndex((0.0, 0.0, height))[2]))
        (x0, y0, _), (sx, sy, _) = scan.pet_suv.GetOrigin(), scan.pet_suv.GetSpacing()
        extent = [x0, x0 + sx * pet.shape[2], y0 + sy * pet.shape[1], y0]
        ax.imshow(pet[z], cmap="gray_r", vmin=0, vmax=20, extent=extent)
        ax.contour(np.linspace(extent[0], extent[1], pet.shape[2]), np.linspace(extent[3], extent[2], pet.shape[1]),
                   labels[z] > 0, [0.5], colors="#d0206a", linewidths=0.8)
        ax.set_xlim(-190, 190)
        ax.set_ylim(150, -150)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("default phantom (4 mm, white noise)" if options is None else
                     f"{domain} (3 mm, correlated noise, textured organs,\nlobulated and rim lesions)", fontsize=9)
    fig.suptitle(f"Development patient {seed}, baseline, the same axial position (SUV 0-20, true lesions outlined)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-site"))
    parser.add_argument("--domain", default="site-b")
    parser.add_argument("--train-seeds", default="5000-5007", help="fine-tuning patients (5000-5099)")
    parser.add_argument("--eval-seeds", default="4500-4505", help="held-out evaluation patients (4500-4599)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8], help="N reviewed patients per model")
    parser.add_argument("--timepoints", type=int, default=3)
    parser.add_argument("--axial-extent-mm", type=float, default=260.0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    parser.add_argument("--stages", nargs="+", default=["all"],
                        choices=["all", "generate", "analyse-train", "review", "train", "analyse-eval", "figures",
                                 "domain-figure"])
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    stages = set(args.stages)

    def wanted(name: str) -> bool:
        return "all" in stages or name in stages

    work = args.work
    if stages == {"domain-figure"}:
        domain_figure(REPO / "docs" / "images" / f"{args.domain}-domain.png", args.domain)
        return
    train_seeds, eval_seeds = _seeds(args.train_seeds), _seeds(args.eval_seeds)
    phantoms = generate(work, train_seeds + eval_seeds, args.timepoints, args.axial_extent_mm, args.domain)
    shipped = {seed: work / "analyses" / f"shipped_s{seed}" for seed in train_seeds + eval_seeds}
    if wanted("analyse-train"):
        for seed in train_seeds:
            analyse(phantoms[seed], shipped[seed], None)
    reviewed = [shipped[seed] for seed in train_seeds]
    if wanted("review"):
        for seed in train_seeds:
            print(f"review of {seed}: {review_as_reader(shipped[seed], phantoms[seed])}", flush=True)
    models = {0: None}
    if wanted("train"):
        for size in args.sizes:
            models[size] = train(work, reviewed, size, args.steps, args.threads)
    else:
        models.update({size: work / "models" / f"site_n{size}.pt" for size in args.sizes
                       if (work / "models" / f"site_n{size}.pt").is_file()})
    runs: dict[int, dict[int, Path]] = {}
    if wanted("analyse-eval"):
        for size, model in models.items():
            runs[size] = {}
            for seed in eval_seeds:
                if size == 0:
                    runs[size][seed] = analyse(phantoms[seed], shipped[seed], None)
                else:
                    runs[size][seed] = analyse(phantoms[seed], work / "analyses" / f"n{size}_s{seed}", model,
                                               registrations_from=shipped[seed])
    if wanted("figures"):
        from LesionResponseLib.segmentation import load_model

        result = {}
        for size, model in models.items():
            outs = {seed: (shipped[seed] if size == 0 else work / "analyses" / f"n{size}_s{seed}") for seed in eval_seeds}
            if not all((o / "analysis.json").is_file() for o in outs.values()):
                continue
            result[str(size)] = figures(outs, phantoms)
            if model is not None:
                record = load_model(model).config.trained_on
                result[str(size)]["training"] = {k: record.get(k) for k in (
                    "training_seconds", "training_cpu_seconds", "steps", "n_scans", "training_rois",
                    "heldout_before", "heldout_after")}
                result[str(size)]["threshold"] = load_model(model).config.threshold
        (work / "figures.json").write_text(json.dumps(result, indent=1))
        print("model | lesion F1 (sensitivity, >= 0.5 mL, precision) | FP ROIs/scan | median Dice | SUVtotal bias "
              "(95 % LoA) | categories agree: all pairs, >= 0.5 mL | training wall / CPU s")
        for size, f in result.items():
            p, t, a = f["pooled"], f.get("training", {}), f["pooled"]["suv_total_agreement"]
            name = "shipped v9" if size == "0" else f"fine-tuned, N={size}"
            print(f"{name} | {p['f1']:.3f} ({p['sensitivity']:.3f}, {p['sensitivity_large']:.3f}, "
                  f"{p['precision']:.3f}) | {p['false_positives_per_scan']:.2f} | {p['dice_median']:.2f} of "
                  f"{p['matched']} | {a['bias']:+.1f} % ({a['lower']:+.1f} to {a['upper']:+.1f} %) | "
                  f"{p['category_agreement_all']:.3f} of {p['n_pairs']}, {p['category_agreement_large']:.3f} of "
                  f"{p['n_pairs_large']} | {t.get('training_seconds', '-')} / {t.get('training_cpu_seconds', '-')}")
            print("  per patient F1: " + ", ".join(f"{s} {v['f1']:.3f}" for s, v in f["patients"].items())
                  + "; categories: " + ", ".join(f"{s} {v['category_agreement_all']:.3f}"
                                                 for s, v in f["patients"].items()))

if __name__ == "__main__":
    main()
