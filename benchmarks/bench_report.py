"""Timings of the report stage: HTML, PDF, DICOM SEG+SR export, on one analysis folder.

Usage: ``.venv/bin/python benchmarks/bench_report.py [OUT]``. Without OUT, a 3-time-point phantom is
generated (seed 1) and analysed with its truth labels into a temporary folder first.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def _analysis_folder(work: Path) -> Path:
    from LesionResponseLib.config import AnalysisParameters
    from LesionResponseLib.phantom import generate_patient
    from LesionResponseLib.workflow import analyze

    phantom = generate_patient(work / "phantom", seed=1, timepoints=3, vendor="siemens")
    out = work / "out"
    analyze(Path(phantom) / "dicom", out, AnalysisParameters().updated({"segmentation.method": "truth"}),
            labels_dir=Path(phantom) / "truth", progress=False)
    return out


def main() -> None:
    from LesionResponseLib.report import export_dicom, write_patient_report

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        out = Path(sys.argv[1]) if len(sys.argv) > 1 else _analysis_folder(work)
        t0 = time.perf_counter()
        html = write_patient_report(out, work / "report", formats=("html",))["html"]
        t1 = time.perf_counter()
        pdf = write_patient_report(out, work / "report_pdf")["pdf"]
        t2 = time.perf_counter()
        files = export_dicom(out, work / "dicom")
        t3 = time.perf_counter()
        html_s, pdf_s, export_s = t1 - t0, t2 - t1, t3 - t2
        print(f"HTML report      {html_s:6.1f} s  {html.stat().st_size / 1e6:.2f} MB")
        print(f"HTML + PDF       {pdf_s:6.1f} s  PDF {pdf.stat().st_size / 1e6:.2f} MB "
              f"(PDF printing = {pdf_s / html_s:.1f}x the HTML alone)")
        print(f"DICOM SEG + SR   {export_s:6.1f} s  {len(files)} files, "
              f"{sum(f.stat().st_size for f in files) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
