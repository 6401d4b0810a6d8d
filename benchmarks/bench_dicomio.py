"""Benchmark: index > 5,000 DICOM files, load a 300-slice PET and its CT; compare with SimpleITK in the same run.

Data: a 7-time-point phantom patient (≈ 5,500 files: CT, AC PET, NAC PET, topogram per study; generation is
not timed) plus one extra study written from the phantom's own headers with a 300-slice PET (128×128,
per-slice RescaleSlope) and a 300-slice CT (512×512), stored in shuffled file order.

Prints: indexing time (headers only, 1 and 4 threads) next to GDCM's series scan through SimpleITK
(``GetGDCMSeriesIDs`` + ``GetGDCMSeriesFileNames`` per folder); selection + SUV time; load time of the
300-slice PET (SUV) + CT (HU) next to ``sitk.ImageSeriesReader`` on the same files; and agreement of values
and geometry. Usage: ``python benchmarks/bench_dicomio.py [--keep DIR]``.

``--jitter``: the slice-position tolerance of :mod:`LesionResponseLib.dicomio.geometry`. A phantom PET (seed 2,
160 mm slab, 4 mm slices, noise and PSF as simulated) is sampled with a Lanczos-8 windowed sinc at slice positions
moved by a fraction of the spacing (alternately ±, random within ±, or GE-like bed joins), then brought back to
the regular grid by the loader's cubic spline, by linear interpolation, or stacked as written (positions
ignored, as ITK's series reader does); prints the relative RMS difference from the regular series over the body
(SUV > 0.3), and the CPU seconds the cubic resampling takes on whole-body sized PET and CT volumes.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.uid import generate_uid

from LesionResponseLib.dicomio import find_timepoints, index_folder, load_timepoint
from LesionResponseLib.phantom import generate_patient

N_SLICES = 300


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def write_long_series(template_dir: Path, out: Path, study: str, upsample: int, rng: random.Random) -> None:
    """Write ``N_SLICES`` slices from the first file of ``template_dir`` (its headers, its pixels tiled)."""
    files = sorted(template_dir.iterdir())
    template = pydicom.dcmread(files[len(files) // 2])
    base = template.pixel_array
    if upsample > 1:
        base = np.kron(base, np.ones((upsample, upsample), base.dtype))
        template.Rows, template.Columns = base.shape
        template.PixelSpacing = [float(v) / upsample for v in template.PixelSpacing]
    series = generate_uid()
    names = list(range(N_SLICES))
    rng.shuffle(names)  # file names and InstanceNumbers in no particular order
    out.mkdir(parents=True, exist_ok=True)
    z0 = float(template.ImagePositionPatient[2])
    slope = float(template.get("RescaleSlope", 1))
    for k, name in enumerate(names):
        ds = template
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = name + 1
        ds.ImagePositionPatient = [float(template.ImagePositionPatient[0]), float(template.ImagePositionPatient[1]),
                                   z0 - 4.0 * k]
        if ds.Modality == "PT":
            ds.RescaleSlope = f"{slope * (1 + 0.01 * (k % 7)):.8g}"  # per-slice slopes, as scanners write
        ds.PixelData = np.roll(base, k % 16, axis=1).tobytes()
        ds.save_as(out / f"IM{name:05d}.dcm")


def build(root: Path) -> str:
    """Generate the phantom and the 300-slice study once; returns the long PET's SeriesInstanceUID."""
    if not (root / "truth.json").exists():
        print("generating a 7-time-point phantom (not timed) ...", flush=True)
        generate_patient(root, seed=11, timepoints=7)
    long_dir = root / "dicom" / "LONG300"
    if not long_dir.exists():
        tp0 = sorted((root / "dicom").glob("*_TP0"))[0]
        study, rng = generate_uid(), random.Random(5)
        write_long_series(tp0 / "PET_AC", long_dir / "PET_AC", study, 1, rng)
        write_long_series(tp0 / "CT", long_dir / "CT", study, 2, rng)
    return pydicom.dcmread(next((long_dir / "PET_AC").iterdir()), stop_before_pixels=True).SeriesInstanceUID


def gdcm_scan(root: Path) -> int:
    """SimpleITK's way to find series: GDCM scans every folder for series ids and sorted file names."""
    n = 0
    for folder, _, files in os.walk(root):
        if not files:
            continue
        for series_id in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder):
            n += len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, series_id))
    return n


def itk_read(files: list[str]) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(Path(files[0]).parent)))
    return reader.Execute()


def _lanczos(volume: np.ndarray, positions: np.ndarray, lobes: int = 8) -> np.ndarray:
    distance = positions[:, None] - np.arange(volume.shape[0])[None, :]
    weights = np.sinc(distance) * np.sinc(distance / lobes) * (np.abs(distance) < lobes)
    return np.tensordot(weights / weights.sum(axis=1, keepdims=True), volume, axes=(1, 0))


def _geometry(along: np.ndarray, shape: tuple[int, int]):
    from LesionResponseLib.dicomio.geometry import SliceGeometry

    axes = np.eye(3)
    return SliceGeometry(axes[0], axes[1], axes[2], np.zeros(3), float(along[-1] / (len(along) - 1)), along,
                         np.zeros((len(along), 3)), (4.0, 4.0))


def jitter_benchmark() -> None:
    """Resampling error against the regular series, and its CPU cost (module docstring, ``--jitter``)."""
    from scipy import interpolate

    from LesionResponseLib.dicomio.geometry import JITTER_TOLERANCE, regularise
    from LesionResponseLib.phantom import simulate_patient

    pet = sitk.GetArrayFromImage(simulate_patient(2, 2, with_ct=False, axial_extent_mm=160).timepoints[0].pet_suv)
    pet = pet.astype(np.float64)
    n, spacing, body = pet.shape[0], 4.0, pet > 0.3
    rng = np.random.default_rng(0)

    def rms(image: np.ndarray) -> float:
        return float(np.sqrt(np.mean((image - pet)[body] ** 2) / np.mean(pet[body] ** 2)))

    patterns = {"alternating": lambda f: f * np.where(np.arange(n) % 2, 1.0, -1.0),
                "random": lambda f: rng.uniform(-f, f, n),
                "bed joins": lambda f: np.where(np.arange(n) >= n // 2, f, 0.0)}
    print(f"slice jitter on the phantom PET ({n} slices of {spacing:g} mm; tolerance {JITTER_TOLERANCE:.0%} of the "
          "spacing): relative RMS vs the regular series, cubic (ours) / linear / stacked as written")
    for fraction in (0.01, 0.025, 0.05, 0.1):
        cells = []
        for name, pattern in patterns.items():
            offsets = pattern(fraction)
            offsets[[0, -1]] = 0.0
            along = (np.arange(n) + offsets) * spacing
            jittered = _lanczos(pet, np.arange(n) + offsets)
            cubic = regularise(jittered, _geometry(along, pet.shape[1:]), fill=0.0)
            linear = interpolate.interp1d(along, jittered, axis=0)(np.arange(n) * spacing)
            cells.append(f"{name} {rms(cubic):.2%} / {rms(linear):.2%} / {rms(jittered):.2%}")
        print(f"  ±{fraction:.1%} ({fraction * spacing:.2f} mm): " + "; ".join(cells))
    for label, shape in (("PET 267×192×192", (267, 192, 192)), ("CT 300×512×512", (300, 512, 512))):
        volume = rng.normal(size=shape).astype(np.float32)
        along = (np.arange(shape[0]) + rng.uniform(-0.02, 0.02, shape[0])) * 3.27
        along -= along[0]
        start = time.process_time()
        regularise(volume, _geometry(along, shape[1:]), fill=0.0)
        print(f"cubic resampling along the normal of a {label} volume: {time.process_time() - start:.2f} CPU s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="Reuse/keep the generated data in this folder.")
    parser.add_argument("--jitter", action="store_true", help="Only the slice-jitter resampling benchmark.")
    args = parser.parse_args()
    if args.jitter:
        jitter_benchmark()
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_dicomio_"))
    try:
        pet_uid = build(root)
        index, t_index = timed(lambda: index_folder(root))  # the default: 1 reader thread
        _, t_index4 = timed(lambda: index_folder(root, workers=4))
        n_files = sum(len(se.instances) for p in index.patients.values() for st in p.studies.values()
                      for se in st.series.values())
        n_gdcm, t_gdcm = timed(lambda: gdcm_scan(root))
        print(f"index: {n_files} DICOM files (+{len(index.non_dicom)} other) in {t_index:.2f} s (default, 1 thread, "
              f"{1000 * t_index / n_files:.2f} ms/file), {t_index4:.2f} s with 4 threads; SimpleITK/GDCM series "
              f"scan of the same tree: {n_gdcm} files in {t_gdcm:.2f} s; ratio ours/GDCM = {t_index / t_gdcm:.2f}")
        inventory, t_find = timed(lambda: find_timepoints(index))
        print(f"selection + SUV of {len(inventory.timepoints)} time points: {t_find:.2f} s "
              f"({len(inventory.ignored)} series ignored)")
        info = next(t for t in inventory.timepoints if t.pet_series_instance_uid == pet_uid)
        loaded, t_load = timed(lambda: load_timepoint(info))
        print(f"LesionResponse load: PET {loaded.pet_suv.GetSize()} in SUV + CT {loaded.ct.GetSize()} in HU: "
              f"{t_load:.2f} s (reads headers again, recomputes SUV, checks geometry)")
        itk_pet, t_itk_pet = timed(lambda: itk_read(info.pet_files))
        itk_ct, t_itk_ct = timed(lambda: itk_read(info.ct_files))
        t_itk = t_itk_pet + t_itk_ct
        print(f"SimpleITK ImageSeriesReader (GDCM sort + read): PET {t_itk_pet:.2f} s + CT {t_itk_ct:.2f} s = "
              f"{t_itk:.2f} s; ratio LesionResponse / SimpleITK = {t_load / t_itk:.2f}")
        ours = sitk.GetArrayFromImage(loaded.pet_suv)
        reference = sitk.GetArrayFromImage(itk_pet).astype(np.float64) * info.suv_factor
        same_ct = np.array_equal(sitk.GetArrayFromImage(loaded.ct), sitk.GetArrayFromImage(itk_ct))
        geometry = all(np.allclose(getattr(a, g)(), getattr(b, g)(), atol=1e-4) for a, b in
                       ((loaded.pet_suv, itk_pet), (loaded.ct, itk_ct))
                       for g in ("GetOrigin", "GetSpacing", "GetDirection"))
        print(f"agreement: max |SUV ours − SimpleITK × suv_factor| / SUVmax = "
              f"{np.abs(reference - ours).max() / ours.max():.2e} (SUVmax {ours.max():.1f}); CT identical: "
              f"{same_ct}; same geometry (origin, spacing, direction): {geometry}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
