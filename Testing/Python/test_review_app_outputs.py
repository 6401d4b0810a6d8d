"""The analysis folder holds the CT the review fuses with the PET (``ct/tp{k}.nii.gz``), equal to the DICOM CT."""

from __future__ import annotations

import numpy as np
import review_app_support as support  # noqa: E402
import SimpleITK as sitk

pytestmark = support.ONE_WORKER


def test_ct_files_equal_the_dicom_ct_and_are_rewritten_only_when_changed(tmp_path):
    from LesionResponseLib.analysis.outputs import write_ct_images
    from LesionResponseLib.dicomio import load_timepoint
    from LesionResponseLib.review.session import load_state

    out = support.copy_analysis(support.review_analysis(), tmp_path / "analysis")
    analysis = load_state(out).analysis
    loaded = load_timepoint(analysis.timepoints[0])
    written = sitk.ReadImage(str(out / "ct" / "tp0.nii.gz"))
    assert written.GetSize() == loaded.ct.GetSize()
    assert np.allclose(written.GetOrigin(), loaded.ct.GetOrigin()) and np.allclose(written.GetSpacing(),
                                                                                 loaded.ct.GetSpacing())
    assert np.array_equal(sitk.GetArrayViewFromImage(written), sitk.GetArrayViewFromImage(loaded.ct))
    assert sorted(p.name for p in (out / "ct").glob("tp*.nii.gz")) == [f"tp{k}.nii.gz" for k in range(4)]
    stamp = (out / "ct" / "tp0.nii.gz").stat().st_mtime_ns
    write_ct_images([loaded], out)  # same CT series: not rewritten; the other time points' files are dropped
    assert (out / "ct" / "tp0.nii.gz").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (out / "ct").glob("tp*.nii.gz")) == ["tp0.nii.gz"]
