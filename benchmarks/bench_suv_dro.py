"""Accuracy check: the SUV loader on the public digital reference objects of the SUV computation manual.

The DROs (Vácha et al., OncoRay 2026, CC BY 4.0: https://github.com/oncoray/suv_computation, folder ``DRO``)
are 17 small PET series, one per header case (units, SUVType, Philips factors, dose in MBq, DecayCorrection
ADMIN/NONE, late SeriesTime, GE private time, injection time variants, Ga-68). Each has a hot sphere (SUVbw
4.00), a cold sphere (0.20) and a background (1.00); ``DRO_list.csv`` gives these expected min / median / max
inside ``mask/DRO_mask.nii.gz``. Nothing is downloaded here: clone the repository yourself and pass its DRO
folder.

Prints, per DRO, the method, reference-time source and assumptions the loader reports, and the SUV min /
median / max in the mask next to the expected values (to 2 decimals, as the manual asks), or the error.
Usage: ``python benchmarks/bench_suv_dro.py PATH/TO/suv_computation/DRO``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.dicomio import find_timepoints, load_timepoint
from LesionResponseLib.errors import LesionResponseError


def masked_stats(dro: Path) -> tuple[tuple[float, float, float], object]:
    """(min, median, max) SUV inside the DRO's mask, and the time point info."""
    info = find_timepoints(dro / "PT").timepoints[0]
    suv = load_timepoint(info, with_ct=False).pet_suv
    mask = sitk.ReadImage(str(dro / "mask" / "DRO_mask.nii.gz"))
    mask = sitk.Resample(mask, suv, sitk.Transform(), sitk.sitkNearestNeighbor, 0)  # same grid, LPS either way
    values = sitk.GetArrayFromImage(suv)[sitk.GetArrayFromImage(mask) > 0]
    return (float(values.min()), float(np.median(values)), float(values.max())), info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dro_dir", type=Path, help="the DRO folder of a clone of oncoray/suv_computation")
    args = parser.parse_args()
    rows = list(csv.DictReader((args.dro_dir / "DRO_list.csv").open(encoding="utf-8")))
    passed = 0
    for row in rows:
        expected = tuple(float(row[f"SUV{k}_expected"]) for k in ("min", "med", "max"))
        try:
            measured, info = masked_stats(args.dro_dir / row["ID"])
        except LesionResponseError as err:
            print(f"{row['ID']:9s} FAILED {row['Description'].strip()}: {err}")
            continue
        ok = all(round(m, 2) == e for m, e in zip(measured, expected, strict=True))
        passed += ok
        print(f"{row['ID']:9s} {'ok  ' if ok else 'DIFF'} min/median/max {measured[0]:.4f} {measured[1]:.4f} "
              f"{measured[2]:.4f} (expected {expected[0]:.2f} {expected[1]:.2f} {expected[2]:.2f}) "
              f"{info.suv_method}; reference {info.suv_reference_time_source}; {row['Description'].strip()}")
        for note in info.suv_assumptions + info.warnings:
            print(f"{'':14s}- {note}")
    print(f"{passed}/{len(rows)} DROs within 0.005 SUV of the expected min, median and max")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
