"""Benchmark: index ≥ 5,000 DICOM files, then load a whole-body PET and its CT; compare with SimpleITK.

Prints the time to index the folder (headers only), to find the time points, and to load one PET (SUV) and
its CT with LesionResponse, next to SimpleITK's ``ImageSeriesReader`` (GDCM) on the same series, in the same
run. Usage: python benchmarks/bench_dicomio.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.dicomio import find_timepoints, index_folder, load_timepoint
from LesionResponseLib.phantom import generate_patient


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="Reuse/keep the generated data in this folder.")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_dicomio_"))
    try:
        if not (root / "truth.json").exists():
            print("generating a 7-time-point phantom (not timed) ...")
            generate_patient(root, seed=11, timepoints=7)
        index, t_index = timed(lambda: index_folder(root))
        files = sum(len(se.instances) for p in index.patients.values() for st in p.studies.values()
                    for se in st.series.values())
        inventory, t_find = timed(lambda: find_timepoints(root, index=index))
        info = inventory.timepoints[-1]
        loaded, t_load = timed(lambda: load_timepoint(info))
        print(f"index: {files} DICOM files (+{len(index.non_dicom)} other) in {t_index:.2f} s "
              f"({1000 * t_index / files:.2f} ms/file); selection + SUV of {len(inventory.timepoints)} time points "
              f"{t_find:.2f} s")
        print(f"LesionResponse load: PET {loaded.pet_suv.GetSize()} + CT {loaded.ct.GetSize()} in {t_load:.2f} s")

        def itk_read(files):
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(Path(files[0]).parent)))
            return reader.Execute()

        itk_pet, t_itk_pet = timed(lambda: itk_read(info.pet_files))
        itk_ct, t_itk_ct = timed(lambda: itk_read(info.ct_files))
        t_itk = t_itk_pet + t_itk_ct
        print(f"SimpleITK ImageSeriesReader: PET {t_itk_pet:.2f} s + CT {t_itk_ct:.2f} s = {t_itk:.2f} s; "
              f"ratio LesionResponse / SimpleITK = {t_load / t_itk:.2f} (ours also computes SUV and checks geometry)")
        pet_bqml = sitk.GetArrayFromImage(itk_pet).astype(np.float64) * info.suv_factor
        ours = sitk.GetArrayFromImage(loaded.pet_suv)
        print(f"agreement: max |SUV ours − SUV from SimpleITK values| = {np.abs(pet_bqml - ours).max():.2e} "
              f"(SUVmax {ours.max():.1f}); same origin: {np.allclose(itk_pet.GetOrigin(), loaded.pet_suv.GetOrigin())}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
