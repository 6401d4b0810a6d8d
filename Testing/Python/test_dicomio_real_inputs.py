"""Real scans as they come: slice jitter, gantry tilt, gaps, symbolic links, ZIP archives, DICOMDIR media,
second copies, dynamic PET and the tracer, on DICOM built here (a few slices of a phantom time point, or tiny
hand-made series)."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import require_tool
from dicom_factory import phantom_series, store_values, write_series
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from typer.testing import CliRunner

from LesionResponseLib.cli import app
from LesionResponseLib.dicomio import (
    GeometryError,
    find_timepoints,
    index_folder,
    load_series,
    load_timepoint,
)
from LesionResponseLib.dicomio.geometry import JITTER_TOLERANCE
from LesionResponseLib.dicomio.tracer import TracerError

SLAB = {"axial_extent_mm": 160}  # the small phantom the other dicomio tests share (41 slices of 4 mm)


# ------------------------------------------------------------------------------------------------ geometry
def _lanczos_slices(volume: np.ndarray, positions: np.ndarray, lobes: int = 8) -> np.ndarray:
    """``volume`` (z, y, x) sampled at fractional slice ``positions`` by a Lanczos-windowed sinc: a band-limited
    model of the scanned object independent of the loader's cubic spline."""
    distance = positions[:, None] - np.arange(volume.shape[0])[None, :]
    weights = np.sinc(distance) * np.sinc(distance / lobes) * (np.abs(distance) < lobes)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.tensordot(weights, volume, axes=(1, 0))


def _jittered_copy(files: list[Path], dest: Path, offsets_mm: np.ndarray, spacing: float) -> None:
    """The series of ``files`` as a scanner would write it with slice k ``offsets_mm[k]`` off its regular position
    along z: moved there, with the values the object has there."""
    datasets = sorted((pydicom.dcmread(f) for f in files), key=lambda ds: float(ds.ImagePositionPatient[2]))
    volume = np.stack([ds.pixel_array * float(ds.RescaleSlope) for ds in datasets])
    values = _lanczos_slices(volume, np.arange(len(datasets)) + offsets_mm / spacing)
    dest.mkdir(parents=True)
    for k, ds in enumerate(datasets):
        store_values(ds, values[k])
        ds.ImagePositionPatient[2] = f"{float(ds.ImagePositionPatient[2]) + offsets_mm[k]:.4f}"
        ds.save_as(dest / f"PT{k:04d}.dcm", enforce_file_format=True)


@pytest.fixture(scope="module")
def jittered(make_phantom, tmp_path_factory):
    """(regular SUV image, jittered series' time point, its SUV image, the offsets): phantom seed 2 TP0's PET with
    slices alternately ±tolerance off the grid (first and last on it): the worst pattern for resampling."""
    phantom = make_phantom(seed=2, timepoints=2, **SLAB)
    files = phantom_series(phantom, 0)
    regular = load_timepoint(find_timepoints(files[0].parent).timepoints[0], with_ct=False).pet_suv
    spacing = regular.GetSpacing()[2]
    offsets = JITTER_TOLERANCE * spacing * np.where(np.arange(len(files)) % 2, 1.0, -1.0)
    offsets[[0, -1]] = 0.0
    folder = tmp_path_factory.mktemp("jitter") / "pet"
    _jittered_copy(files, folder, offsets, spacing)
    info = find_timepoints(folder).timepoints[0]
    return regular, info, load_timepoint(info, with_ct=False).pet_suv, offsets


def test_jitter_up_to_the_tolerance_is_resampled_to_the_regular_series(jittered):
    regular, info, loaded, offsets = jittered
    assert loaded.GetSize() == regular.GetSize() and loaded.GetSpacing() == pytest.approx(regular.GetSpacing())
    assert loaded.GetOrigin() == pytest.approx(regular.GetOrigin(), abs=1e-3)
    truth, ours = sitk.GetArrayFromImage(regular), sitk.GetArrayFromImage(loaded)
    body = truth > 0.3  # SUV: the patient, not the air around
    relative_rms = np.sqrt(np.mean((ours - truth)[body] ** 2) / np.mean(truth[body] ** 2))
    assert relative_rms < 0.005, relative_rms  # measured 0.38 % (benchmarks/bench_dicomio.py --jitter)
    # the jittered slices stacked where their files do not say they are (what ignoring the positions does):
    # measured 1.21 % against the resampled 0.38 %
    stacked = np.stack([pydicom.dcmread(f).pixel_array * float(pydicom.dcmread(f).RescaleSlope)
                        for f in sorted(info.pet_files)]) * info.suv_factor
    naive_rms = np.sqrt(np.mean((stacked - truth)[body] ** 2) / np.mean(truth[body] ** 2))
    assert relative_rms < naive_rms


def test_jitter_is_recorded_in_the_provenance(jittered):
    _, info, _, offsets = jittered
    assert info.pet_slice_deviation_mm == pytest.approx(np.abs(offsets).max(), abs=2e-4)
    [note] = info.geometry_notes
    assert note.startswith(f"PET: slices up to {np.abs(offsets).max():.3f} mm off a regular 4 mm grid (41 slices)")


def test_bed_joins_of_a_ge_discovery_st_are_accepted(tmp_path):
    """6 beds of 3.27 mm slices joined by one step of 3.19 mm and four of 3.29 mm, as that scanner wrote them."""
    steps = [3.27] * 47
    for join, step in zip((7, 15, 23, 31, 39), (3.19, 3.29, 3.29, 3.29, 3.29), strict=True):
        steps[join] = step
    z = -np.concatenate([[0.0], np.cumsum(steps)])
    write_series(tmp_path / "pet", z_positions=list(z), values=np.ones((48, 8, 8)) * 1000.0, spacing_z=3.27)
    info = find_timepoints(tmp_path).timepoints[0]
    assert 0.05 < info.pet_slice_deviation_mm <= 0.08 and info.geometry_notes
    pet = load_timepoint(info).pet_suv
    assert pet.GetSize()[2] == 48 and pet.GetSpacing()[2] == pytest.approx(153.69 / 47)
    assert sitk.GetArrayFromImage(pet) == pytest.approx(1000.0 * info.suv_factor, rel=1e-6)


def test_jitter_beyond_the_tolerance_is_refused_naming_the_files(tmp_path):
    z = -4.0 * np.arange(12)
    z[5] += 1.5 * JITTER_TOLERANCE * 4.0
    write_series(tmp_path / "pet", z_positions=list(z))
    with pytest.raises(GeometryError, match=r"4\.30 mm between IM0006\.dcm and IM0005\.dcm \(missing slices\?\); "
                                            r"slices lie up to 0\.30 mm off a regular grid, more than 5 % of the spacing"):
        find_timepoints(tmp_path)


def test_tilted_ct_is_resampled_onto_an_untilted_grid(tmp_path):
    """Slice k written 0.7·k mm further along y (9.9° tilt): the resampled voxel at (x, y, z) holds the value the
    files give at that physical point; the analytic HU = 2·y + z makes it checkable everywhere inside."""
    tilt, n = 0.7, 12
    y, z = np.arange(16) * 4.0, -4.0 * np.arange(n)
    hu = np.stack([np.broadcast_to((2 * (y + tilt * k) + z[k])[:, None], (16, 16)) for k in range(n)])
    write_series(tmp_path / "ct", modality="CT", values=hu, tilt_mm_per_slice=tilt)
    ct = load_series([str(p) for p in sorted((tmp_path / "ct").iterdir())], dtype=None)
    assert ct.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1) and ct.GetPixelID() == sitk.sitkInt16
    array = sitk.GetArrayFromImage(ct)
    for g in range(n):
        for j in range(4, 12):  # rows the in-plane shift (≤ 2 pixels) leaves inside the field of view
            x, yy, zz = ct.TransformIndexToPhysicalPoint((8, j, g))
            assert array[g, j, 8] == pytest.approx(2 * yy + zz, abs=1.0)


def test_two_slices_at_one_position_are_refused(tmp_path):
    paths = write_series(tmp_path / "pet")
    ds = pydicom.dcmread(paths[3])
    ds.ImagePositionPatient = pydicom.dcmread(paths[2]).ImagePositionPatient
    ds.save_as(paths[3])
    with pytest.raises(GeometryError, match=r"IM0002\.dcm and .*IM0003\.dcm are at the same position"):
        find_timepoints(tmp_path)


def test_dynamic_pet_is_listed_not_chosen(tmp_path):
    write_series(tmp_path / "pet", slice_tags=lambda k, ds: setattr(ds, "SeriesType", ["DYNAMIC", "IMAGE"]))
    [ignored] = find_timepoints(tmp_path, strict=False).ignored
    assert ignored.reason.startswith("dynamic PET (SeriesType (0054,1000) DYNAMIC/IMAGE): its slices repeat")


# ------------------------------------------------------------------------------------------------ sources
def _patients(folder: Path) -> list[str]:
    return sorted(index_folder(folder).patients)


def test_symbolic_links_are_followed_once_and_loops_listed(tmp_path):
    archive = tmp_path / "archive"
    for name in ("ALPHA", "BRAVO", "CHARLIE"):
        write_series(archive / name, patient_id=name)
    cohort = tmp_path / "cohort"
    shutil.copytree(archive / "ALPHA", cohort / "ALPHA")  # one real folder, two linked ones
    (cohort / "BRAVO").symlink_to(archive / "BRAVO")
    (cohort / "CHARLIE").symlink_to(archive / "CHARLIE")
    (cohort / "BRAVO-again").symlink_to(archive / "BRAVO")
    (cohort / "ALPHA" / "loop").symlink_to(cohort)
    (cohort / "broken").symlink_to(tmp_path / "nowhere")
    index = index_folder(cohort)
    assert sorted(index.patients) == ["ALPHA", "BRAVO", "CHARLIE"]
    assert all(p.n_files == 12 for p in index.patients.values())
    reasons = {Path(p).name: r for p, r in index.not_read}
    assert reasons["loop"].startswith("symbolic link loop: ")
    assert reasons["BRAVO-again"].startswith("the same folder as ") and "read once" in reasons["BRAVO-again"]
    assert reasons["broken"] == f"broken symbolic link to {tmp_path / 'nowhere'}"
    from LesionResponseLib.workflow.cohort import discover, input_fingerprint

    jobs = discover(cohort)
    assert [(j.patient_id, Path(j.folder).name) for j in jobs] == [("ALPHA", "ALPHA"), ("BRAVO", "BRAVO"),
                                                                    ("CHARLIE", "CHARLIE")]
    before = input_fingerprint(jobs[1].folder)
    (archive / "BRAVO" / "IM0000.dcm").touch()  # a file behind the link changes: the patient's key changes
    assert input_fingerprint(jobs[1].folder) != before


def test_zip_archive_gives_the_same_inspect_as_the_folder(make_phantom, tmp_path):
    phantom = make_phantom(seed=2, timepoints=2, vendor="ge", **SLAB)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as handle:  # stored: archive, not compression, is tested
        for path in sorted((phantom / "dicom").rglob("*.dcm")):
            handle.write(path, path.relative_to(phantom / "dicom"))
    runner = CliRunner()
    folder = json.loads(runner.invoke(app, ["inspect", str(phantom / "dicom"), "--json"]).stdout)
    result = runner.invoke(app, ["inspect", str(archive), "--json"])
    assert result.exit_code == 0, result.output
    zipped = json.loads(result.stdout)
    [unpacked] = zipped.pop("archives").values()
    shutil.rmtree(unpacked)  # inspect unpacks into the system's temporary folder: leave nothing there
    Path(unpacked + ".unpacked").unlink()
    assert Path(unpacked).parent.name == "lesion-response-archives" and folder.pop("archives") == {}
    text = json.dumps(zipped).replace(unpacked, str(phantom / "dicom")).replace(str(archive), str(phantom / "dicom"))
    assert json.loads(text) == folder


def test_dicomdir_media_are_read_and_the_dicomdir_listed(tmp_path):
    dcmmkdir = require_tool("dcmmkdir")
    media = tmp_path / "media"
    study_id = lambda k, ds: setattr(ds, "StudyID", "1")  # noqa: E731 (type 1 in a DICOMDIR's study record)
    for k, path in enumerate(write_series(tmp_path / "pet", slice_tags=study_id)):  # ISO 9660: 8 characters
        (media / "DICOM" / "PT").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, media / "DICOM" / "PT" / f"IM{k:06d}")
    subprocess.run([dcmmkdir, "--recurse", "DICOM"], cwd=media, check=True, capture_output=True)
    index = index_folder(media)
    assert (media / "DICOMDIR").is_file() and index.n_files == 12 and list(index.patients) == ["P1"]
    assert index.not_read == [(str(media / "DICOMDIR"), "DICOMDIR: the media's directory; the images it lists "
                                                        "are read from the folder tree")]


def test_a_second_copy_of_an_instance_is_read_once_and_listed(tmp_path):
    paths = write_series(tmp_path / "export1" / "pet")
    (tmp_path / "export2").mkdir()
    shutil.copy(paths[4], tmp_path / "export2" / "copy.dcm")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    inventory = find_timepoints(tmp_path)
    assert len(inventory.timepoints[0].pet_files) == 12
    assert sorted(r.split(" (")[0] for _, r in inventory.not_read) == [f"a second copy of {paths[4]}", "hidden file"]


# ------------------------------------------------------------------------------------------------ tracer
def _radiopharmaceutical(text: str | None = None, code: tuple[str, str, str] | None = None,
                         nuclide: tuple[str, str] = ("35337001", "^68^Gallium"), half_life: float = 4062.6):
    def edit(k: int, ds: Dataset) -> None:
        item = ds.RadiopharmaceuticalInformationSequence[0]
        item.RadionuclideHalfLife = f"{half_life}"
        item.RadionuclideCodeSequence[0].CodeValue, item.RadionuclideCodeSequence[0].CodeMeaning = nuclide
        if text is not None:
            item.Radiopharmaceutical = text
        if code is not None:
            entry = Dataset()
            entry.CodeValue, entry.CodingSchemeDesignator, entry.CodeMeaning = code
            item.RadiopharmaceuticalCodeSequence = Sequence([entry])
    return edit


FDG = {"text": "Fluorodeoxyglucose", "code": ("35321007", "SCT", "Fluorodeoxyglucose F^18^"),
       "nuclide": ("77004003", "^18^Fluorine"), "half_life": 6586.2}


@pytest.mark.parametrize(("tags", "name", "nuclide"), [
    ({"code": ("724025002", "SCT", "Dotatate Ga^68^")}, "[68Ga]Ga-DOTATATE", "Ga-68"),
    ({"code": ("C2713594", "UMLS", "Edotreotide Ga^68^")}, "[68Ga]Ga-DOTATOC", "Ga-68"),
    ({"text": "68Ga-DOTA-NOC"}, "[68Ga]Ga-DOTANOC", "Ga-68"),
    ({"text": "Ga68 DOTA-TATE (NETSPOT)"}, "[68Ga]Ga-DOTATATE", "Ga-68"),
    ({"text": "Cu-64 dotatate (Detectnet)", "nuclide": ("3932008", "^64^Copper"), "half_life": 45723.6},
     "[64Cu]Cu-DOTATATE", "Cu-64"),
    ({}, None, "Ga-68"),  # nothing names the agent: passes with a warning
])
def test_sstr_tracers_pass_and_are_named(tmp_path, tags, name, nuclide):
    write_series(tmp_path / "pet", slice_tags=_radiopharmaceutical(**tags))
    info = find_timepoints(tmp_path).timepoints[0]
    assert (info.radiopharmaceutical, info.radionuclide, info.tracer_override) == (name, nuclide, False)
    assert any("radiopharmaceutical is not named" in w for w in info.warnings) == (name is None)


@pytest.mark.parametrize("tags", [FDG, {"text": "FDG"}, {"text": "Ga-68 PSMA-11"},
                                  {"text": "Lu-177 DOTATATE", "nuclide": ("447553000", "^177^Lutetium")}])
def test_another_tracer_is_refused_naming_it(tmp_path, tags):
    write_series(tmp_path / "pet", slice_tags=_radiopharmaceutical(**tags))
    with pytest.raises(TracerError, match=r"IM0000\.dcm: the PET shows .* not a somatostatin-receptor tracer .* "
                                          r"pass --allow-other-tracer"):
        find_timepoints(tmp_path)


def test_fdg_is_named_in_inspect_and_accepted_with_the_override(tmp_path):
    write_series(tmp_path / "pet", slice_tags=_radiopharmaceutical(**FDG), half_life=6586.2)
    runner = CliRunner()
    refused = json.loads(runner.invoke(app, ["inspect", str(tmp_path), "--json"]).stdout)
    assert refused["timepoints"] == []
    [ignored] = refused["ignored"]
    assert ignored["reason"].startswith("another tracer: ") and "the PET shows Fluorodeoxyglucose F^18^ " \
        "(RadiopharmaceuticalCodeSequence (0054,0304)" in ignored["reason"]
    result = runner.invoke(app, ["inspect", str(tmp_path), "--allow-other-tracer", "--json"])
    [info] = json.loads(result.stdout)["timepoints"]
    assert info["tracer_override"] and info["radionuclide"] == "F-18"
    assert info["radiopharmaceutical"] == "Fluorodeoxyglucose F^18^"
    assert any("is not somatostatin-receptor PET: analysed on the user's request" in w for w in info["warnings"])
