"""Send exported DICOM objects to a PACS by C-STORE (pynetdicom)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from LesionResponseLib.errors import LesionResponseError, describe


class PacsError(LesionResponseError):
    """The PACS could not be reached or refused the association."""


class PacsAddressError(PacsError, ValueError):
    """A PACS address is not ``HOST:PORT[:AET]`` (a ValueError too: a command-line parser reports it as a usage
    error)."""


#: Called AE title when an address gives none (Orthanc's default).
DEFAULT_CALLED_AET = "ORTHANC"


def parse_pacs_target(text: str) -> tuple[str, int, str]:
    """``HOST:PORT[:AET]`` -> (host, port, called AE title; default :data:`DEFAULT_CALLED_AET`)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].isdigit():
        raise PacsAddressError(describe(f"{text!r} is not HOST:PORT[:AET]",
                                        fix="Give e.g. pacs.local:4242 or pacs.local:4242:ORTHANC."))
    return parts[0], int(parts[1]), parts[2] if len(parts) == 3 and parts[2] else DEFAULT_CALLED_AET


def send_to_pacs(paths: list[str | Path], host: str, port: int, *, called_aet: str = "ORTHANC",
                 calling_aet: str = "LESIONRESPONSE", timeout_s: float = 30.0) -> dict[str, Any]:
    """C-STORE every file in ``paths`` to ``host:port`` in one association.

    Proposes one presentation context per (SOP class, transfer syntax) of the files. ``timeout_s`` bounds
    connection, DIMSE and network waits. Returns ``{"stored": n, "failed": n, "files": {path: status}}``
    where status is ``"ok"`` or a short reason (the DIMSE status in hex).
    """
    import pydicom
    from pynetdicom import AE

    datasets = {str(p): pydicom.dcmread(p) for p in paths}
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    for sop_class, syntax in sorted({(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID))
                                     for d in datasets.values()}):
        ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate(host, int(port), ae_title=called_aet)
    if not assoc.is_established:
        raise PacsError(describe(f"no DICOM association with {called_aet}@{host}:{port} (rejected or unreachable)",
                                 fix="Check host, port and AE titles, and that the PACS accepts our AE title "
                                     f"{calling_aet!r}."))
    statuses: dict[str, str] = {}
    try:
        for path, ds in datasets.items():
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            statuses[path] = "ok" if code == 0x0000 else f"failed (status {code:#06x})" if code is not None \
                else "failed (no response)"
    finally:
        assoc.release()
    stored = sum(s == "ok" for s in statuses.values())
    return {"stored": stored, "failed": len(statuses) - stored, "files": statuses}
