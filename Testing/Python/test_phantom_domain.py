"""Another site's scans (``phantom.domain``): options that change nothing leave the patient bit-identical; the
site-b domain has its PET grid, noise correlated at the calibrated per-voxel level, and lobulated and
rim-enhancing lesions."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from LesionResponseLib.phantom import simulate_patient
from LesionResponseLib.phantom.domain import DOMAINS, DomainOptions, domain_named
from LesionResponseLib.phantom.errors import PhantomError

SEED = 21
SMALL = {"timepoints": 1, "with_ct": False, "axial_extent_mm": 60}  # a 60 mm slab of the upper abdomen


def _pet(patient) -> np.ndarray:
    return sitk.GetArrayFromImage(patient.timepoints[0].pet_suv)


def test_options_that_change_nothing_leave_the_patient_bit_identical():
    default = simulate_patient(SEED, **SMALL)
    same = simulate_patient(SEED, **SMALL, domain=DomainOptions())
    assert np.array_equal(_pet(default), _pet(same)) and default.truth == same.truth


def _noise(domain: DomainOptions | None) -> tuple[np.ndarray, np.ndarray]:
    """The PET's noise (noisy minus noise-free scan of the same patient) and the body mask."""
    noisy = simulate_patient(SEED, **SMALL, domain=domain)
    clean = simulate_patient(SEED, **SMALL, domain=domain, noise_scale=0.0)
    body = sitk.GetArrayFromImage(noisy.timepoints[0].organ_labels) > 0
    return _pet(noisy) - _pet(clean), body


def _lag1(noise: np.ndarray, body: np.ndarray) -> float:
    """Correlation of neighbouring voxels along x inside the body."""
    inside = body[:, :, 1:] & body[:, :, :-1]
    return float(np.corrcoef(noise[:, :, 1:][inside], noise[:, :, :-1][inside])[0, 1])


def test_correlated_noise_keeps_the_voxel_noise_and_gains_its_correlation():
    white, body = _noise(None)
    correlated, same_body = _noise(DomainOptions(noise_correlation_mm=8.0))
    assert np.array_equal(body, same_body)
    assert _lag1(white, body) < 0.4 < 0.7 < _lag1(correlated, body)  # 0.5-voxel post-filter vs 8 mm at 4 mm voxels
    ratio = correlated[body].std() / white[body].std()
    assert 0.85 < ratio < 1.15  # calibrated to the same per-voxel noise (REFERENCE_LIVER_COV)


def test_site_b_has_its_grid_resolution_and_lesions():
    patient = simulate_patient(SEED, **SMALL, domain=domain_named("site-b"))
    scan = patient.timepoints[0]
    assert scan.pet_suv.GetSpacing() == (3.0, 3.0, 3.0) == scan.lesion_labels.GetSpacing()
    assert 4.5 <= scan.acquisition.psf_fwhm_mm <= 5.0
    single = [le for le in patient.lesions if le.kind not in ("split", "merge")]
    assert 0.3 < np.mean([bool(le.lobes) for le in single]) < 0.9  # 60 % lobulated
    assert any(le.profile == "rim" for le in single)
    assert all(2 * max(le.radii) >= 16.0 for le in single if le.profile == "rim")
    for entry in (e for le in patient.truth["lesions"] for e in le["timepoints"].values() if e["present"]):
        assert entry["ideal_snr"] is None  # the white-noise ideal observer does not apply on this grid
    assert patient.truth["lesions"] and set(DOMAINS) == {"site-b"}
    with pytest.raises(PhantomError, match="domain"):
        domain_named("site-z")


def test_phantom_command_writes_a_domain_patient(tmp_path):
    import json

    import pydicom
    from typer.testing import CliRunner

    from LesionResponseLib.cli import app
    from LesionResponseLib.cli_base import EXIT_INPUT

    bad = CliRunner().invoke(app, ["phantom", "--out", str(tmp_path / "x"), "--domain", "site-z"])
    assert bad.exit_code == EXIT_INPUT and "site-b" in bad.output
    result = CliRunner().invoke(app, ["phantom", "--out", str(tmp_path / "p"), "--seed", str(SEED), "--timepoints", "2",
                                      "--domain", "site-b", "--axial-extent-mm", "40", "--no-extras"])
    assert result.exit_code == 0, result.output
    truth = json.loads((tmp_path / "p" / "truth.json").read_text())
    assert truth["options"]["domain"]["pet_spacing_mm"] == [3.0, 3.0, 3.0]
    pet = next(p for p in (tmp_path / "p" / "dicom").rglob("*") if p.is_file()
               and pydicom.dcmread(p, stop_before_pixels=True).Modality == "PT")
    assert [float(v) for v in pydicom.dcmread(pet, stop_before_pixels=True).PixelSpacing] == [3.0, 3.0]
