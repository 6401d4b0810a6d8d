"""Where a reference region's SUVmean error comes from, against the phantom's truth (issue 33).

Two measurements:

1. ``--seeds`` (patients analysed by ``bench_burden.py`` in ``--work``): per placed sphere, the error against the
   organ's true uptake split into **spill-in** (the noise-free image in the sphere: the phantom's blur-free SUV,
   re-simulated from the seed, blurred by the scan's PSF - lesions, hot organs and the organ's edge) and **noise**
   (the rest), and the noise's **rank** among every centre the placement rule admits (a sphere of the same size
   at every voxel of normal tissue deep enough). A rule that picks noise-high positions ranks high on average;
   one that does not ranks 0.5.
2. ``--monte-carlo SEED``: a lesion-free upper-abdomen slab of that seed, ``--realisations`` noise realisations of
   its noise-free PET (the phantom's noise model and post-filter): the placed liver sphere's error and that of a
   sphere fixed at the noise-free image's placement. Their mean difference is the placement rule's own selection
   bias; the fixed sphere's spread is the noise error of a 3 cm sphere's mean.

Run: ``nice -n 5 .venv/bin/python benchmarks/bench_reference_bias.py --work DIR --seeds 4480-4485`` (after
``bench_burden.py --work DIR``); ``... --monte-carlo 4495 --realisations 30`` (about 3 CPU s a realisation).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, signal

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench_analysis import _phantom, _seeds  # noqa: E402
from bench_burden import _physiological_map  # noqa: E402


def blurred_truth(scan) -> np.ndarray:
    """The scan's blur-free SUV (PET grid) blurred by its PSF: the noise-free image, up to the phantom's blurring
    on the finer CT grid (equal in an organ's interior)."""
    spacing = scan.pet_true.GetSpacing()[::-1]
    sigma = [scan.acquisition.psf_fwhm_mm / 2.3548 / s for s in spacing]
    return ndimage.gaussian_filter(sitk.GetArrayFromImage(scan.pet_true).astype(np.float64), sigma, mode="constant")


def admissible_sphere_means(image: np.ndarray, normal: np.ndarray, spacing, diameter: float, depth_needed: float):
    """The mean of ``image`` over a sphere of ``diameter`` (mm) centred at every voxel of ``normal`` at least
    ``depth_needed`` (mm) deep (the centres the placement rule admits), and the depth map."""
    depth = ndimage.distance_transform_edt(normal, sampling=spacing)
    half = [int(np.ceil(diameter / 2 / s)) for s in spacing]
    axes = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing, strict=True)], indexing="ij")
    kernel = (sum(a**2 for a in axes) <= (diameter / 2) ** 2).astype(float)
    kernel /= kernel.sum()
    box = tuple(slice(max(0, int(f.min()) - h), int(f.max()) + h + 1) for f, h in zip(np.nonzero(normal), half,
                                                                                          strict=True))
    means = np.full(image.shape, np.nan)
    means[box] = signal.fftconvolve(image[box], kernel, mode="same")
    return means[depth >= depth_needed], depth


def analysed(work: Path, seeds: list[int], timepoints: int) -> None:
    from LesionResponseLib.analysis import load_analysis
    from LesionResponseLib.analysis.reference_regions import margin_mm, place_reference_regions, sphere_mask
    from LesionResponseLib.dicomio import find_timepoints, load_timepoint
    from LesionResponseLib.phantom.simulate import simulate_patient
    from LesionResponseLib.segmentation.model import load_model
    from LesionResponseLib.segmentation.organs import axis_mm, find_organs

    rows = []
    for seed in seeds:
        phantom = _phantom(work, seed, timepoints, {})
        out = work / f"burden_s{seed}_model_{phantom.name}"
        analysis = load_analysis(out)
        threshold = load_model(analysis.parameters.segmentation.model_path).config.physiological_threshold
        patient = simulate_patient(seed, timepoints, with_ct=False)
        for info in find_timepoints(phantom / "dicom").timepoints:
            tp, scan = load_timepoint(info), patient.timepoints[info.index]
            labels = sitk.ReadImage(str(out / "labels" / f"tp{info.index}.nii.gz"))
            organs = find_organs(tp.pet_suv, tp.ct, _physiological_map(out, tp.pet_suv), threshold)
            noise_free = blurred_truth(scan)
            pet = sitk.GetArrayFromImage(tp.pet_suv).astype(np.float64)
            spacing = tp.pet_suv.GetSpacing()[::-1]
            for region in place_reference_regions(tp.pet_suv, labels, organs, info.index, analysis.parameters):
                if not region.placed:
                    continue
                true = scan.organ_suv[region.organ]
                inside = sphere_mask(tp.pet_suv, region.centre_mm, region.diameter_mm)
                normal = organs.mask(region.organ) & ~(sitk.GetArrayViewFromImage(labels) > 0)
                if region.organ == "liver":
                    normal &= (axis_mm(tp.pet_suv, 0) < organs.midline_x_mm())[None, None, :]
                noise = 100.0 * (pet - noise_free) / true
                candidates, _ = admissible_sphere_means(noise, normal, spacing, region.diameter_mm,
                                                        region.diameter_mm / 2 + margin_mm(analysis.parameters))
                row = {"seed": seed, "tp": info.index, "organ": region.organ,
                       "error": 100.0 * (region.suv_mean / true - 1), "spill": 100.0 * (noise_free[inside].mean()
                                                                                        / true - 1),
                       "noise": float(noise[inside].mean()), "candidates": float(np.mean(candidates)),
                       "rank": float(np.mean(candidates < noise[inside].mean()))}
                rows.append(row)
                print(f"seed {seed} TP{info.index} {region.organ:6s} error {row['error']:+5.2f} % = spill-in "
                      f"{row['spill']:+5.2f} % + noise {row['noise']:+5.2f} % (admissible spheres' mean noise "
                      f"{row['candidates']:+5.2f} %, rank of the chosen {row['rank']:.2f})", flush=True)
    for organ in ("liver", "spleen"):
        mine = [r for r in rows if r["organ"] == organ]
        if len(mine) > 1:
            print(f"{organ} over {len(mine)} scans: " + ", ".join(
                f"{key} {_mean_se([r[key] for r in mine])}" for key in ("error", "spill", "noise", "candidates",
                                                                         "rank")))


def monte_carlo(seed: int, realisations: int) -> None:
    from LesionResponseLib.analysis.reference_regions import place_reference_regions, sphere_mask
    from LesionResponseLib.config import AnalysisParameters
    from LesionResponseLib.phantom.simulate import POST_FILTER_SIGMA, _noise, simulate_patient
    from LesionResponseLib.segmentation.organs import find_organs

    params = AnalysisParameters()
    # 240 mm: the whole liver and spleen of the reference anatomy (the liver is ~156 mm tall)
    scan = simulate_patient(seed, 1, n_lesions=0, noise_scale=0, axial_extent_mm=240).timepoints[0]
    noise_free, true = sitk.GetArrayFromImage(scan.pet_suv), scan.organ_suv["liver"]
    labels = sitk.Image(scan.pet_suv.GetSize(), sitk.sitkUInt16)
    labels.CopyInformation(scan.pet_suv)

    def liver_sphere(image: sitk.Image):
        return place_reference_regions(image, labels, find_organs(image, scan.ct), 0, params)[0]

    fixed = sphere_mask(scan.pet_suv, liver_sphere(scan.pet_suv).centre_mm, 30.0)
    rng = np.random.default_rng([seed, 12345])
    placed, at_fixed = [], []
    for _ in range(realisations):
        pet = noise_free + _noise(noise_free, scan.acquisition, rng)
        pet = np.clip(ndimage.gaussian_filter(pet, POST_FILTER_SIGMA, mode="nearest"), 0, None).astype(np.float32)
        image = sitk.GetImageFromArray(pet)
        image.CopyInformation(scan.pet_suv)
        placed.append(100.0 * (liver_sphere(image).suv_mean / true - 1))
        at_fixed.append(100.0 * (float(pet[fixed].mean()) / true - 1))
    print(f"seed {seed}, {realisations} noise realisations of a lesion-free slab: placed liver sphere "
          f"{_mean_se(placed)} %, fixed sphere {_mean_se(at_fixed)} % (SD {statistics.stdev(at_fixed):.2f} %), "
          f"placed - fixed {_mean_se([a - b for a, b in zip(placed, at_fixed, strict=True)])} %")


def _mean_se(values: list[float]) -> str:
    return f"{statistics.mean(values):+.2f} ± {statistics.stdev(values) / len(values) ** 0.5:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="bench_burden.py's work folder (with --seeds)")
    parser.add_argument("--seeds", help="analysed patients, e.g. 4480-4485")
    parser.add_argument("--timepoints", type=int, default=3)
    parser.add_argument("--monte-carlo", type=int, metavar="SEED", help="a lesion-free slab of this seed")
    parser.add_argument("--realisations", type=int, default=30)
    args = parser.parse_args()
    if args.seeds:
        analysed(args.work, _seeds(args.seeds), args.timepoints)
    if args.monte_carlo is not None:
        monte_carlo(args.monte_carlo, args.realisations)


if __name__ == "__main__":
    main()
