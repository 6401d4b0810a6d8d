"""Segmentation benchmark: model(s) vs the threshold baseline on held-out phantom patients, every vendor.

Run: ``.venv/bin/python benchmarks/bench_segmentation.py [--seeds 100-104] [--models v9,FILE.pt] [--in-memory]``.

Data: project phantom (``LesionResponseLib.phantom``), seeds 100-199 (never used for training, 1000-1999).
Seed ``s`` is written as DICOM in vendor ``VENDORS[s % len(VENDORS)]`` (so 100, 105, ... are Siemens BQML/START,
Siemens ADMIN, Philips CNTS, GE reprocessed, GML) and read back through ``dicomio.find_timepoints`` /
``load_timepoint``, so the SUV a method sees is the one the pipeline sees. ``--in-memory`` skips DICOM.
``--small-lesions``, ``--low-contrast``, ``--near-organs``, ``--lesions``: harder patients (the phantom's options,
as in ``bench_analysis.py``).

Figures per method: lesion sensitivity (true lesions >= 0.5 mL; detected = a predicted ROI with Dice >= 0.1
or containing the centroid), false-positive ROIs per scan (ROIs touching no true lesion), voxels labelled in
each physiological organ (outside the true lesions dilated by 2 voxels, i.e. not partial-volume spill),
median Dice of detected lesions, and seconds per whole-body scan (vertex to thigh, 2 threads).
Every method runs on every scan; the per-scan lines show each method's own ROI count. Models are scored as
shipped (ROIs lying in the cranial cavity found on the CT dropped, ``anatomy.cranial_cavity``; for models with a
physiological output, also the ROIs lying on it, ``components.drop_physiological_rois``), "(no filter)", and
"(+ equivocal filter)" (ROIs < 0.5 mL with SUVmax not above the liver also dropped, the default until
2026-12-05); models with a CT
channel get the scan's CT, and those that accept a missing CT are also scored without it ("(no CT)").

Then detection of every true lesion (any size) by true volume (truth.json ``volume_ml``: < 0.5, 0.5-1, 1-2,
2-5, > 5 mL) and by site (truth.json ``site``), next to the physical limit of each volume bin: the analytic
peak recovery coefficient of a sphere of the bin's median volume (``metrics.sphere_recovery``) for the PSF
alone (truth ``psf_fwhm_mm``, ~6 mm) and for the reconstructed image (``--recon-fwhm-mm``), and the expected
peak contrast-to-noise ratio of the bin's lesions: recovery (reconstructed) x (true SUVmax - local background)
/ local noise, both measured on the PET in a shell 8-16 mm around the lesion (median, 1.4826 x MAD). "CNR >= 5"
is the share of lesions above Rose's criterion (Rose 1948: an object is reliably seen at SNR >= ~5), the
share any detector can be expected to find.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from phantom_options import add_phantom_options, options_key, phantom_options

from LesionResponseLib.segmentation import load_model, segment, segment_with_evidence
from LesionResponseLib.segmentation.metrics import (
    evaluate,
    expected_peak_cnr,
    match_lesions,
    organ_voxels,
    sphere_recovery,
)
from LesionResponseLib.segmentation.model import MODELS_DIR, uses_ct

MODELS = {p.stem.rsplit("_", 1)[-1]: p for p in sorted(MODELS_DIR.glob("lesion_segresnet_v*.pt"))}
VOLUME_BINS_ML = (0.5, 1.0, 2.0, 5.0)  # edges: < 0.5, 0.5-1, 1-2, 2-5, > 5 mL
# Reconstructed resolution of the phantom PET: the PSF (~6 mm) combined in quadrature with the 4 mm voxel
# (box of 4 mm = Gaussian FWHM 2.72 mm) and the scanner-like 2 mm-sigma post-filter (FWHM 4.71 mm): 8.1 mm.
RECON_FWHM_MM = 8.1
ROSE_CNR = 5.0


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
    lesions: list[tuple[TrueLesion, bool]] = field(default_factory=list)  # every true lesion, detected?
    # Models with a physiological output: its Dice per scan, its recall per organ (one value per scan), and the
    # true lesions lying on it (>= half their voxels, where the longitudinal search would not go).
    organ_dice: list[float] = field(default_factory=list)
    organ_recall: dict[str, list[float]] = field(default_factory=dict)
    on_organ: list[TrueLesion] = field(default_factory=list)


@dataclass
class TrueLesion:
    """A true lesion label of a benchmark scan: site, true volume (mL), expected peak CNR, PSF FWHM (mm)."""

    site: str
    volume_ml: float
    cnr: float
    psf_fwhm_mm: float


@dataclass
class Scan:
    """One benchmark scan: SUV PET, CT (HU or None), truth label maps on the PET grid, true lesions by label."""

    pet: sitk.Image
    ct: sitk.Image | None
    lesions: sitk.Image
    organs: sitk.Image
    truth: dict[int, TrueLesion]


def load_scan(seed: int, vendor: str, cache: Path, in_memory: bool, with_ct: bool,
              options: dict | None = None) -> Scan:
    """Phantom ``seed``'s baseline, through DICOM unless ``in_memory`` (CT too if ``with_ct``); truth is
    resampled (nearest) onto the loaded PET grid. ``options``: harder-patient options of ``simulate_patient``
    (small_lesions, low_contrast, near_organs, n_lesions)."""
    from LesionResponseLib.phantom import generate_patient, load_truth, simulate_patient

    options = options or {}
    if in_memory:
        patient = simulate_patient(seed, timepoints=1, with_ct=with_ct, **options)
        tp = patient.timepoints[0]
        return Scan(tp.pet_suv, tp.ct, tp.lesion_labels, tp.organ_labels,
                    _true_lesions(patient.truth, tp.pet_suv, tp.lesion_labels))
    from LesionResponseLib.dicomio import find_timepoints, load_timepoint

    folder = cache / "_".join([f"s{seed}", vendor, *options_key(options)])
    if not (folder / "truth.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        generate_patient(folder, seed=seed, timepoints=1, vendor=vendor, extras=False, **options)
    loaded = load_timepoint(find_timepoints(folder / "dicom").timepoints[0], with_ct=with_ct)
    pet = loaded.pet_suv
    truth = [sitk.Resample(sitk.ReadImage(str(folder / "truth" / f"tp0_{kind}.nii.gz")), pet, sitk.Transform(),
                           sitk.sitkNearestNeighbor, 0) for kind in ("lesions", "organs")]
    return Scan(pet, loaded.ct, truth[0], truth[1], _true_lesions(load_truth(folder), pet, truth[0]))


def _true_lesions(truth: dict, pet: sitk.Image, labels: sitk.Image) -> dict[int, TrueLesion]:
    """Site, true volume and expected peak contrast-to-noise ratio (``metrics.expected_peak_cnr``) of every true
    lesion label at time point 0 (a lesion drawn with several labels shares its volume between them)."""
    suv, label_map = sitk.GetArrayFromImage(pet), sitk.GetArrayFromImage(labels)
    psf = float(truth["timepoints"][0].get("psf_fwhm_mm", 6.0))
    out = {}
    for lesion in truth["lesions"]:
        tp = lesion["timepoints"]["0"]
        if not tp["present"]:
            continue
        for label in tp["labels"]:
            if not (label_map == label).any():
                continue
            volume = tp["volume_ml"] / len(tp["labels"])
            cnr = expected_peak_cnr(suv, label_map, [int(label)], true_suv_max=tp["suv_max"], volume_ml=volume,
                                    spacing_mm=min(pet.GetSpacing()),
                                    recon_fwhm_mm=RECON_FWHM_MM)
            out[int(label)] = TrueLesion(lesion["site"], volume, cnr, psf)
    return out


def _variants(scan: Scan, method: str) -> dict[str, tuple[sitk.Image, float]]:
    """Label maps (and seconds) of one method: as shipped (for models: without the ROIs on the model's
    physiological output and those in the cranial cavity found on the CT, as ``segment`` does), and for models
    also with no filter and with the equivocal-ROI filter added (``components.drop_equivocal_rois``, off by
    default), whose costs are added to the shipped variant's time; models with a CT channel that accept a
    missing CT are also run without it."""
    from LesionResponseLib.segmentation import drop_equivocal_rois, liver_reference
    from LesionResponseLib.segmentation.anatomy import INTRACRANIAL_SHARE, cranial_cavity
    from LesionResponseLib.segmentation.components import drop_physiological_rois, drop_rois_in

    pet = scan.pet
    if method == "threshold":
        start = time.perf_counter()
        return {"": (segment(pet, method="threshold"), time.perf_counter() - start)}
    out = {}
    config = load_model(method).config
    runs = {"": scan.ct}
    if uses_ct(config) and config.missing_ct == "zeros":
        runs[" (no CT)"] = None
    for suffix, ct in runs.items():
        start = time.perf_counter()
        output = segment_with_evidence(pet, ct, method="model", model_path=method, equivocal_max_volume_ml=0.0,
                                       drop_physiological=False, drop_intracranial=False)
        labels = output.labels
        raw_seconds = time.perf_counter() - start
        filtered = labels
        if output.physiological is not None:
            filtered = drop_physiological_rois(labels, pet, output.physiological, config.physiological_threshold)[0]
        if scan.ct is not None:
            filtered = drop_rois_in(filtered, pet, cranial_cavity(scan.ct, pet), INTRACRANIAL_SHARE)[0]
        out[suffix] = (filtered, time.perf_counter() - start)
        if not suffix:
            out[" (no filter)"] = (labels, raw_seconds)
            equivocal = drop_equivocal_rois(filtered, pet, liver_reference(pet)[0], max_volume_ml=0.5)
            out[" (+ equivocal filter)"] = (equivocal, time.perf_counter() - start)
    return out


def _physiological_figures(scan: Scan, method: str, into: Totals) -> str:
    """For a model with a ``physiological`` output: add its Dice against the truth (the organs of
    ``PHYSIOLOGICAL_OUTPUT_ORGANS`` outside the lesions), its recall per organ and the true lesions lying on it
    (``prior_guided.physiological_share`` >= ``PHYSIOLOGICAL_SHARE``) to ``into``; a short line for the log."""
    from LesionResponseLib.phantom import ORGAN_LABELS
    from LesionResponseLib.segmentation.model import PHYSIOLOGICAL_OUTPUT_ORGANS
    from LesionResponseLib.segmentation.prior_guided import PHYSIOLOGICAL_SHARE, physiological_share
    from LesionResponseLib.segmentation.training import physiological_target

    if method == "threshold" or "physiological" not in load_model(method).config.outputs:
        return ""
    threshold = load_model(method).config.physiological_threshold
    output = segment_with_evidence(scan.pet, scan.ct, method="model", model_path=method)
    predicted = sitk.GetArrayFromImage(output.physiological) >= threshold
    organs, lesions = sitk.GetArrayFromImage(scan.organs), sitk.GetArrayFromImage(scan.lesions)
    target = physiological_target(organs, lesions) > 0
    dice = 2.0 * float((predicted & target).sum()) / max(1, int(predicted.sum() + target.sum()))
    into.organ_dice.append(dice)
    for name in PHYSIOLOGICAL_OUTPUT_ORGANS:
        organ = (organs == ORGAN_LABELS.get(name, -1)) & target
        if organ.any():
            into.organ_recall.setdefault(name, []).append(float(predicted[organ].mean()))
    probability = sitk.GetArrayFromImage(output.physiological)
    on = [lesion for label, lesion in scan.truth.items()
          if physiological_share(lesions == label, probability, threshold) >= PHYSIOLOGICAL_SHARE]
    into.on_organ += on
    return f"physiological Dice {dice:.2f}, true lesions on it {len(on)}"


def run(seeds: list[int], methods: dict[str, str], cache: Path, in_memory: bool,
        options: dict | None = None) -> dict[str, Totals]:
    from LesionResponseLib.phantom import ORGAN_LABELS, PHYSIOLOGICAL_ORGANS, VENDORS

    organs = {ORGAN_LABELS[n]: n for n in PHYSIOLOGICAL_ORGANS if n in ORGAN_LABELS}
    with_ct = True  # CT-channel models read it, and every model's ROIs in the cranial cavity (CT) are dropped
    totals: dict[str, Totals] = {}
    print(f"{'seed':>4} {'vendor':>13} {'method':>24} {'lesions':>7} {'found':>5} {'ROIs':>4} {'FP':>3} {'Dice':>5} {'s':>5}  organ voxels")
    for i, seed in enumerate(seeds):
        vendor = VENDORS[seed % len(VENDORS)]  # the same vendor whatever the range
        scan = load_scan(seed, vendor, cache, in_memory, with_ct, options)
        lesions, organ_map = scan.lesions, scan.organs
        for method in methods.values() if i == 0 else ():  # warm-up: loading is not inference time
            if method != "threshold":
                load_model(method)
                segment(scan.pet, scan.ct, method="model", model_path=method)
        for base, method in methods.items():
            for suffix, (labels, seconds) in _variants(scan, method).items():
                name = base + suffix
                m = evaluate(labels, lesions)
                t = totals.setdefault(name, Totals())
                t.lesions += [(scan.truth[x.label], x.detected) for x in match_lesions(labels, lesions)
                              if x.label in scan.truth]
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
            line = _physiological_figures(scan, method, totals[base])
            if line:
                print(f"{seed:>4} {vendor:>13} {base:>24}  {line}", flush=True)
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


def _bin_name(volume_ml: float) -> str:
    edges = VOLUME_BINS_ML
    if volume_ml < edges[0]:
        return f"< {edges[0]:g} mL"
    for lo, hi in zip(edges, edges[1:], strict=False):
        if volume_ml < hi:
            return f"{lo:g}-{hi:g} mL"
    return f"> {edges[-1]:g} mL"


def print_by_volume(totals: dict[str, Totals]) -> None:
    """Detection per true-volume bin, next to the analytic recovery and the expected contrast-to-noise."""
    names = list(totals)
    reference = totals[names[0]].lesions  # the same true lesions for every method
    order = [_bin_name(v) for v in (0.1, 0.7, 1.5, 3.0, 10.0)]
    print(f"\nDetection of every true lesion by true volume; RC = analytic peak recovery of a sphere of the bin's "
          f"median volume (PSF ~{np.median([x.psf_fwhm_mm for x, _ in reference]):.1f} mm FWHM alone / "
          f"reconstructed {RECON_FWHM_MM} mm); CNR = expected peak contrast-to-noise (median); "
          f"CNR >= {ROSE_CNR:g}: share above Rose's criterion")
    print("| true volume | lesions | median volume (mL) | RC (PSF) | RC (recon) | median CNR | CNR >= 5 | "
          + " | ".join(names) + " |")
    print("|---" * (7 + len(names)) + "|")
    for name in order:
        rows = [x for x, _ in reference if _bin_name(x.volume_ml) == name]
        if not rows:
            continue
        volume = float(np.median([x.volume_ml for x in rows]))
        psf = float(np.median([x.psf_fwhm_mm for x in rows]))
        cnr = np.array([x.cnr for x in rows])
        found = []
        for method in names:
            hits = [d for x, d in totals[method].lesions if _bin_name(x.volume_ml) == name]
            found.append(f"{np.mean(hits):.2f} ({sum(hits)}/{len(hits)})")
        print(f"| {name} | {len(rows)} | {volume:.2f} | {sphere_recovery(volume, psf):.2f} | "
              f"{sphere_recovery(volume, RECON_FWHM_MM):.2f} | {np.median(cnr):.1f} | "
              f"{np.mean(cnr >= ROSE_CNR):.2f} | " + " | ".join(found) + " |")


def print_by_site(totals: dict[str, Totals]) -> None:
    """Detection per lesion site (truth.json ``site``), all sizes and >= 0.5 mL true volume."""
    names = list(totals)
    sites = sorted({x.site for x, _ in totals[names[0]].lesions})
    print("\nDetection by site (all true lesions | true volume >= 0.5 mL)")
    print("| site | " + " | ".join(f"{n} (all) | {n} (>= 0.5 mL)" for n in names) + " |")
    print("|---" * (1 + 2 * len(names)) + "|")
    for site in sites:
        cells = []
        for method in names:
            hits = [(x.volume_ml, d) for x, d in totals[method].lesions if x.site == site]
            big = [d for v, d in hits if v >= VOLUME_BINS_ML[0]]
            cells.append(f"{sum(d for _, d in hits)}/{len(hits)} | {sum(big)}/{len(big)}")
        print(f"| {site} | " + " | ".join(cells) + " |")


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a machine shared with other jobs)")
    parser.add_argument("--seeds", default="100-104", help="held-out seed range (100-199), e.g. 100-109")
    parser.add_argument("--models", default="v9", help="the shipped version (v9) and/or model files to compare, "
                        "comma-separated (older versions' files: Resources/Models/MODEL_CARD.md)")
    parser.add_argument("--in-memory", action="store_true", help="skip the DICOM round trip")
    parser.add_argument("--cache", default=None, help="folder to keep generated DICOM phantoms in")
    parser.add_argument("--no-baseline", action="store_true", help="skip the threshold baseline")
    add_phantom_options(parser)
    parser.add_argument("--save", default=None, help="also write the figures to this JSON file (for --merge)")
    parser.add_argument("--merge", nargs="+", default=None,
                        help="print the tables of runs saved with --save (e.g. seed ranges run in parallel)")
    args = parser.parse_args()
    if args.merge:
        totals, n_scans = merge_runs([Path(f) for f in args.merge])
        print_all(totals, n_scans)
        return
    torch.set_num_threads(args.threads)
    first, last = (int(v) for v in args.seeds.split("-"))
    methods = {Path(v).stem if v not in MODELS else v: str(_model_path(v))
               for v in args.models.split(",") if v and _model_path(v).exists()}
    if not args.no_baseline:
        methods["threshold"] = "threshold"
    cache = Path(args.cache) if args.cache else Path(tempfile.gettempdir()) / "lesion_response_bench_seg"
    seeds = list(range(first, last + 1))
    options = phantom_options(args)
    totals = run(seeds, methods, cache, args.in_memory, options)
    if args.save:
        Path(args.save).write_text(json.dumps({"n_scans": len(seeds), "seeds": seeds,
                                               "totals": {k: asdict(v) for k, v in totals.items()}}))
    print_all(totals, len(seeds))


def print_physiological(totals: dict[str, Totals]) -> None:
    """The physiological output of the models that have one: Dice, recall per organ, true lesions on it."""
    rows = {name: t for name, t in totals.items() if t.organ_dice}
    if not rows:
        return
    print("\nPhysiological output (organs of PHYSIOLOGICAL_OUTPUT_ORGANS outside the lesions; p >= the model's "
          "physiological_threshold): Dice and recall per organ (median over scans); true lesions lying on it (>= half "
          "their voxels: not searched from, dropped as model ROIs)")
    for name, t in rows.items():
        recall = ", ".join(f"{organ} {np.median(v):.2f}" for organ, v in t.organ_recall.items())
        big = [x for x in t.on_organ if x.volume_ml >= VOLUME_BINS_ML[0]]
        sites = dict(Counter(x.site for x in t.on_organ))
        print(f"| {name} | Dice {np.median(t.organ_dice):.3f} | recall {recall} | lesions on it "
              f"{len(t.on_organ)} of {len(t.lesions)} ({len(big)} >= 0.5 mL; {sites or 'none'}) |")


def print_all(totals: dict[str, Totals], n_scans: int) -> None:
    print_table(totals, n_scans)
    print_by_volume(totals)
    print_by_site(totals)
    print_physiological(totals)


def merge_runs(files: list[Path]) -> tuple[dict[str, Totals], int]:
    """Figures of several ``--save`` files added up per method (each method's files must hold disjoint seeds;
    files may hold different methods on the same seeds)."""
    merged: dict[str, Totals] = {}
    seeds: set[int] = set()
    for path in files:
        data = json.loads(path.read_text())
        seeds |= set(data["seeds"])
        for name, t in data["totals"].items():
            into = merged.setdefault(name, Totals())
            into.true, into.detected = into.true + t["true"], into.detected + t["detected"]
            into.fp += t["fp"]
            into.dice += t["dice"]
            into.seconds += t["seconds"]
            for organ, n in t["organ"].items():
                into.organ[organ] = into.organ.get(organ, 0) + n
            into.lesions += [(TrueLesion(**x), bool(d)) for x, d in t["lesions"]]
            into.organ_dice += t.get("organ_dice", [])
            for organ, values in t.get("organ_recall", {}).items():
                into.organ_recall.setdefault(organ, []).extend(values)
            into.on_organ += [TrueLesion(**x) for x in t.get("on_organ", [])]
    return merged, len(seeds)


if __name__ == "__main__":
    main()
