"""Write a phantom patient folder: DICOM, ground truth (JSON + NIfTI label maps) and MIPs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import SimpleITK as sitk

from LesionResponseLib.phantom.dicom_writer import VENDORS, write_study
from LesionResponseLib.phantom.domain import DomainOptions
from LesionResponseLib.phantom.errors import bad_option
from LesionResponseLib.phantom.mip import save_mips
from LesionResponseLib.phantom.simulate import simulate_patient


def generate_patient(out_dir: str | Path, *, seed: int = 1, timepoints: int = 4, vendor: str = "siemens",
                     extras: bool = True, n_lesions: int | None = None, motion_scale: float = 1.0,
                     noise_scale: float = 1.0, axial_extent_mm: float | None = None, progress=None,
                     small_lesions: bool = False, low_contrast: bool = False, near_organs: float = 0.0,
                     domain: DomainOptions | None = None, split_neighbours: tuple[float, ...] = ()) -> Path:
    """Simulate a patient and write the phantom folder of docs/ARCHITECTURE.md; returns ``out_dir``.

    ``out_dir/dicom`` (one study per time point: CT, PET, and with ``extras`` a localizer and a NAC PET),
    ``truth.json``, ``truth/tp{k}_lesions.nii.gz``, ``truth/tp{k}_organs.nii.gz``, ``mip/tp{k}.png``,
    ``mip/all.png``. Options are those of :func:`simulate_patient` (``axial_extent_mm`` makes a small slab
    patient for tests; ``small_lesions``, ``low_contrast``, ``near_organs``, ``split_neighbours`` make harder
    benchmark patients; ``domain`` another site's scans, recorded in ``truth.json`` ``options.domain``).
    """
    if vendor not in VENDORS:
        raise bad_option("vendor", vendor, "one of " + ", ".join(VENDORS))
    out = Path(out_dir)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    patient = simulate_patient(seed, timepoints, n_lesions=n_lesions, motion_scale=motion_scale,
                               noise_scale=noise_scale, with_nac=extras, axial_extent_mm=axial_extent_mm,
                               progress=progress, small_lesions=small_lesions, low_contrast=low_contrast,
                               near_organs=near_organs, domain=domain, split_neighbours=split_neighbours)
    truth = patient.truth
    truth["vendor"] = vendor
    truth["options"] = {"extras": extras, "n_lesions": n_lesions, "motion_scale": motion_scale,
                        "noise_scale": noise_scale, "axial_extent_mm": axial_extent_mm,
                        "small_lesions": small_lesions, "low_contrast": low_contrast, "near_organs": near_organs}
    if domain is not None:  # only then: the default patient's truth.json stays as it was
        truth["options"]["domain"] = domain.to_dict()
    if split_neighbours:  # recorded only when used, so default truth files stay as they were
        truth["options"]["split_neighbours"] = [float(d) for d in split_neighbours]
    for scan, tp in zip(patient.timepoints, truth["timepoints"], strict=True):
        tp.update(write_study(patient, scan, out / "dicom", vendor, extras=extras))
        tp["folder"] = os.path.relpath(tp["folder"], out)
        tp["lesion_labels"] = f"truth/tp{scan.index}_lesions.nii.gz"
        tp["organ_labels"] = f"truth/tp{scan.index}_organs.nii.gz"
        sitk.WriteImage(scan.lesion_labels, str(out / tp["lesion_labels"]), useCompression=True)
        sitk.WriteImage(scan.organ_labels, str(out / tp["organ_labels"]), useCompression=True)
    titles = [f"TP{s.index} {s.acquisition.scan_start:%Y-%m-%d}" for s in patient.timepoints]
    save_mips([s.pet_suv for s in patient.timepoints], out / "mip", titles)
    tmp = out / "truth.json.tmp"
    tmp.write_text(json.dumps(truth, indent=1))
    os.replace(tmp, out / "truth.json")
    return out


def load_truth(directory: str | Path) -> dict:
    """The ground truth of a phantom folder (``truth.json``)."""
    path = Path(directory) / "truth.json"
    if not path.exists():
        from LesionResponseLib.errors import LesionResponseError, describe

        raise LesionResponseError(describe("no truth.json: not a phantom folder", path=directory,
                                           fix="Generate one with `lesion-response phantom --out DIR`."))
    return json.loads(path.read_text())
