"""C-STORE of the exported SEG and SR into a real Orthanc on loopback, checked through Orthanc's REST API."""

from __future__ import annotations

import json
import urllib.request

import pydicom
import pytest
from test_report_factory import build_output

from LesionResponseLib.report import PacsError, export_dicom, send_to_pacs


def test_send_stores_every_object(orthanc, tmp_path):
    base, port = orthanc
    out = build_output(tmp_path)
    paths = export_dicom(out, tmp_path / "export")
    result = send_to_pacs(paths, "127.0.0.1", port)
    assert result["stored"] == len(paths) == 6 and result["failed"] == 0
    stored = json.loads(urllib.request.urlopen(f"{base}/instances?expand", timeout=10).read())
    stored_uids = {item["MainDicomTags"]["SOPInstanceUID"] for item in stored}
    sent = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}
    assert sent == stored_uids
    modalities = {json.loads(urllib.request.urlopen(f"{base}/series/{s}", timeout=10).read())
                  ["MainDicomTags"]["Modality"] for s in json.loads(urllib.request.urlopen(f"{base}/series").read())}
    assert modalities == {"SEG", "SR"}


def test_wrong_called_aet_is_refused(orthanc, tmp_path):
    _, port = orthanc
    out = build_output(tmp_path)
    paths = export_dicom(out, tmp_path / "export")[:1]
    with pytest.raises(PacsError, match="NOTORTHANC"):
        send_to_pacs(paths, "127.0.0.1", port, called_aet="NOTORTHANC")


def test_cli_export_and_send(orthanc, tmp_path):
    from typer.testing import CliRunner

    from LesionResponseLib.cli import app

    base, port = orthanc
    out = build_output(tmp_path)
    result = CliRunner().invoke(app, ["export", str(out), "-o", str(tmp_path / "x"),
                                      "--send", f"127.0.0.1:{port}:ORTHANC"])
    assert result.exit_code == 0, result.output
    assert "6 stored, 0 failed" in result.output
    assert len(json.loads(urllib.request.urlopen(f"{base}/instances", timeout=10).read())) == 6
