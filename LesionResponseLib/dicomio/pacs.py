"""Query and retrieve a patient's PET/CT series from a DICOM server into a local folder.

Two protocols, chosen by the address (:func:`parse_pacs`):

- DICOMweb (``http://host:port/dicom-web``, ``https://...``): QIDO-RS searches, WADO-RS retrieves
  (``dicomweb-client``), PS3.18.
- DIMSE (``dicom://AET@host:port``): C-FIND (Study Root) searches, C-GET retrieves over the same
  association with SCP role selection for the storage classes (pynetdicom), PS3.4 Annex C. C-GET needs no
  storage SCP of ours reachable from the PACS (C-MOVE would), so it works from behind NAT and in tests.
  Our calling AE title is that of :func:`LesionResponseLib.report.send_to_pacs` (``LESIONRESPONSE``); the
  PACS must allow it to query and retrieve (Orthanc: ``DicomAlwaysAllowFind`` / ``DicomAlwaysAllowGet``,
  or a ``DicomModalities`` entry).

Only series of modality PT and CT are fetched (what :func:`find_timepoints` chooses from; localizers and
NAC PET among them are ignored later by the loader, as for a folder). Layout of the cache:
``DEST/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``; each file is written to a temporary name and renamed,
and ``DEST/<SeriesInstanceUID>/.complete`` is written last, so an interrupted retrieval resumes with the
series it had not finished and a folder never holds half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from LesionResponseLib.dicomio.errors import DicomInputError
from LesionResponseLib.errors import describe

MODALITIES = ("PT", "CT")
CALLING_AET = "LESIONRESPONSE"  # the AE title report.pacs.send_to_pacs uses
TIMEOUT_S = 60.0  # connection, DIMSE and HTTP waits; a whole-body CT series is ~300 files


class PacsRetrieveError(DicomInputError):
    """The DICOM server could not be reached, refused us, or did not deliver a series."""


@dataclass(frozen=True)
class PacsAddress:
    """Where the server is: ``protocol`` ``dicomweb`` (``url``) or ``dimse`` (``host``, ``port``, ``called_aet``)."""

    protocol: str
    url: str = ""
    host: str = ""
    port: int = 0
    called_aet: str = ""
    calling_aet: str = CALLING_AET

    def __str__(self) -> str:
        return self.url if self.protocol == "dicomweb" else f"dicom://{self.called_aet}@{self.host}:{self.port}"


def parse_pacs(spec: str, calling_aet: str = CALLING_AET) -> PacsAddress:
    """``http(s)://host:port/prefix`` (DICOMweb root) or ``dicom://AET@host:port`` (DIMSE)."""
    parsed = urlparse(spec)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return PacsAddress("dicomweb", url=spec.rstrip("/"), calling_aet=calling_aet)
    if parsed.scheme == "dicom" and parsed.hostname and parsed.port and parsed.username:
        return PacsAddress("dimse", host=parsed.hostname, port=int(parsed.port), called_aet=parsed.username,
                           calling_aet=calling_aet)
    raise PacsRetrieveError(describe(f"cannot read the PACS address {spec!r}", path="--pacs",
                                     fix="Give a DICOMweb root (http://host:8042/dicom-web) or a DIMSE address "
                                         "dicom://AET@host:port."))


# ------------------------------------------------------------------------------------------------- search
def _series_rows(address: PacsAddress, patient_id: str) -> list[dict[str, Any]]:
    """``{study_uid, series_uid, modality, instances}`` of the patient's PT and CT series."""
    if address.protocol == "dicomweb":
        return _qido_series(address, patient_id)
    return _cfind_series(address, patient_id)


def find_patients(address: PacsAddress) -> list[str]:
    """PatientIDs of every patient with a PET (PT) study on the server, sorted."""
    if address.protocol == "dicomweb":
        import pydicom

        client = _client(address)
        found = _qido_all(address, lambda limit, offset: client.search_for_studies(
            search_filters={"ModalitiesInStudy": "PT"}, fields=["PatientID"], limit=limit, offset=offset))
        return sorted({str(pydicom.Dataset.from_json(item).get("PatientID", "")) for item in found} - {""})
    studies = _cfind(address, "STUDY", {"PatientID": "*", "StudyInstanceUID": "", "ModalitiesInStudy": ""})
    return sorted({str(s.get("PatientID", "")) for s in studies
                   if "PT" in _values(s.get("ModalitiesInStudy", ""))} - {""})


def _values(value: Any) -> list[str]:
    from pydicom.multival import MultiValue

    return [str(v) for v in value] if isinstance(value, list | tuple | MultiValue) else [str(value)]


def _client(address: PacsAddress):
    from dicomweb_client import DICOMwebClient

    return DICOMwebClient(url=address.url, timeout=TIMEOUT_S)


def _http(address: PacsAddress, call: Callable[[], Any]) -> Any:
    import requests

    try:
        return call()
    except (requests.RequestException, OSError) as err:
        raise PacsRetrieveError(describe(f"DICOMweb request to {address} failed: {err}",
                                         fix="Check the URL (the DICOMweb root, e.g. http://host:8042/dicom-web), "
                                             "that the server runs and that it allows us in.")) from None


def _qido_all(address: PacsAddress, search: Callable[[int, int], list[dict]], page: int = 500) -> list[dict]:
    """Every match of a QIDO-RS search, page by page (``limit``/``offset``).

    dicomweb-client's ``get_remaining`` never stops on a server that ignores ``offset`` (Orthanc's DICOMweb
    plugin 1.7 in Debian 12 does): a page that adds no new object ends the loop here.
    """
    found: dict[str, dict] = {}
    offset = 0
    while True:
        items = _http(address, lambda o=offset: search(page, o))
        new = {json.dumps(item, sort_keys=True): item for item in items}
        before = len(found)
        found.update(new)
        if len(items) < page or len(found) == before:
            return list(found.values())
        offset += len(items)


def _qido_series(address: PacsAddress, patient_id: str) -> list[dict[str, Any]]:
    import pydicom

    client = _client(address)
    rows = []
    for modality in MODALITIES:
        found = _qido_all(address, lambda limit, offset, m=modality: client.search_for_series(
            search_filters={"PatientID": patient_id, "Modality": m},
            fields=["StudyInstanceUID", "NumberOfSeriesRelatedInstances"], limit=limit, offset=offset))
        for item in found:
            ds = pydicom.Dataset.from_json(item)
            rows.append({"study_uid": str(ds.StudyInstanceUID), "series_uid": str(ds.SeriesInstanceUID),
                         "modality": modality, "instances": int(ds.get("NumberOfSeriesRelatedInstances") or 0)})
    return rows


def _association(address: PacsAddress, contexts: list, roles: list | None = None, handlers: list | None = None):
    from pynetdicom import AE

    ae = AE(ae_title=address.calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
    for context in contexts:
        ae.add_requested_context(context)
    assoc = ae.associate(address.host, address.port, ae_title=address.called_aet, ext_neg=roles or None,
                         evt_handlers=handlers or None)
    if not assoc.is_established:
        raise PacsRetrieveError(describe(f"no DICOM association with {address} (rejected or unreachable)",
                                         fix="Check host, port and AE title, and that the PACS lets our AE title "
                                             f"{address.calling_aet!r} query and retrieve."))
    return assoc


def _cfind(address: PacsAddress, level: str, keys: dict[str, Any]) -> list[Any]:
    from pydicom import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    query = Dataset()
    query.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    assoc = _association(address, [StudyRootQueryRetrieveInformationModelFind])
    matches = []
    try:
        for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            code = getattr(status, "Status", None)
            if code in (0xFF00, 0xFF01) and identifier is not None:
                matches.append(identifier)
            elif code is not None and code != 0x0000:
                raise PacsRetrieveError(describe(f"C-FIND at {level} level refused by {address} "
                                                 f"(status {code:#06x})",
                                                 fix="Allow our AE title to query (Orthanc: DicomAlwaysAllowFind)."))
    finally:
        assoc.release()
    return matches


def _cfind_series(address: PacsAddress, patient_id: str) -> list[dict[str, Any]]:
    rows = []
    for study in _cfind(address, "STUDY", {"PatientID": patient_id, "StudyInstanceUID": ""}):
        for modality in MODALITIES:
            for series in _cfind(address, "SERIES", {"StudyInstanceUID": study.StudyInstanceUID,
                                                     "SeriesInstanceUID": "", "Modality": modality,
                                                     "NumberOfSeriesRelatedInstances": ""}):
                rows.append({"study_uid": str(study.StudyInstanceUID), "series_uid": str(series.SeriesInstanceUID),
                             "modality": modality,
                             "instances": int(series.get("NumberOfSeriesRelatedInstances") or 0)})
    return rows


# ----------------------------------------------------------------------------------------------- retrieve
def _write_atomic(ds: Any, folder: Path) -> None:
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    tmp = folder / f".{ds.SOPInstanceUID}.tmp"
    ds.save_as(tmp, enforce_file_format=True)
    os.replace(tmp, path)


def _wado_series(address: PacsAddress, row: dict[str, Any], folder: Path) -> None:
    client = _client(address)
    datasets = _http(address, lambda: client.iter_series(row["study_uid"], row["series_uid"]))
    _http(address, lambda: [_write_atomic(ds, folder) for ds in datasets])


def _cget_series(address: PacsAddress, row: dict[str, Any], folder: Path) -> None:
    from pydicom import Dataset
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import (
        CTImageStorage,
        EnhancedPETImageStorage,
        PositronEmissionTomographyImageStorage,
        StudyRootQueryRetrieveInformationModelGet,
    )

    storage = [PositronEmissionTomographyImageStorage, CTImageStorage, EnhancedPETImageStorage]

    def on_store(event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        _write_atomic(ds, folder)
        return 0x0000

    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID, query.SeriesInstanceUID = row["study_uid"], row["series_uid"]
    assoc = _association(address, [StudyRootQueryRetrieveInformationModelGet, *storage],
                         [build_role(uid, scp_role=True) for uid in storage], [(evt.EVT_C_STORE, on_store)])
    try:
        for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
            code = getattr(status, "Status", None)
            if code is not None and code not in (0x0000, 0xFF00, 0xFF01):
                raise PacsRetrieveError(describe(f"C-GET of series {row['series_uid']} from {address} failed "
                                                 f"(status {code:#06x})",
                                                 fix="Allow our AE title to retrieve (Orthanc: DicomAlwaysAllowGet)."))
    finally:
        assoc.release()


def retrieve_patient(address: PacsAddress, patient_id: str, dest: str | Path,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Fetch the patient's PT and CT series into ``dest`` (module docstring); returns what was done.

    ``{"series": n, "retrieved": n, "reused": n, "files": n}``; ``reused`` counts series already complete in
    ``dest`` (their ``.complete`` marker names as many files as the server holds). ``progress(done, total)``
    per series.
    """
    rows = _series_rows(address, patient_id)
    if not rows:
        raise PacsRetrieveError(describe(f"no PT or CT series of patient {patient_id!r} on {address}",
                                         fix="Check the PatientID (as the PACS stores it) and the server."))
    dest = Path(dest)
    done = {"series": len(rows), "retrieved": 0, "reused": 0, "files": 0}
    for n, row in enumerate(sorted(rows, key=lambda r: (r["study_uid"], r["series_uid"])), 1):
        folder = dest / row["series_uid"]
        marker = folder / ".complete"
        if marker.is_file() and json.loads(marker.read_text()).get("instances") == row["instances"]:
            done["reused"] += 1
        else:
            folder.mkdir(parents=True, exist_ok=True)
            (_wado_series if address.protocol == "dicomweb" else _cget_series)(address, row, folder)
            got = len(list(folder.glob("*.dcm")))
            if row["instances"] and got < row["instances"]:
                raise PacsRetrieveError(describe(f"series {row['series_uid']} of {patient_id!r}: {got} of "
                                                 f"{row['instances']} instances received from {address}",
                                                 path=folder, fix="Retry; check the server's log."))
            tmp = folder / ".complete.tmp"
            tmp.write_text(json.dumps({"instances": row["instances"] or got, "source": str(address)}))
            os.replace(tmp, marker)
            done["retrieved"] += 1
        done["files"] += len(list(folder.glob("*.dcm")))
        if progress:
            progress(n, len(rows))
    return done
