"""Errors of the DICOM stage; each message names the file, the tag (keyword and (gggg,eeee)) and the fix."""

from __future__ import annotations

from pydicom.datadict import tag_for_keyword

from LesionResponseLib.errors import LesionResponseError, describe


class DicomInputError(LesionResponseError):
    """A DICOM input problem: the message names the file, the tag or series, and what to do."""


class PatientSelectionError(DicomInputError):
    """No patient, an unknown patient, several patients, or two patients sharing one ID."""


class SuvTagError(DicomInputError):
    """A tag that SUV needs is missing, implausible or contradictory."""


class GeometryError(DicomInputError):
    """Slices that do not form a regular volume (tilt, gaps, duplicates, mixed orientation or size)."""


class CorruptFileError(DicomInputError):
    """A file of a chosen series cannot be read."""


def tag(keyword: str) -> str:
    """``Keyword (gggg,eeee)`` for a standard DICOM keyword."""
    value = tag_for_keyword(keyword)
    if value is None:
        return keyword
    return f"{keyword} ({value >> 16:04X},{value & 0xFFFF:04X})"


def fail(cls: type[DicomInputError], path: str | None, problem: str, fix: str) -> DicomInputError:
    """An error of class ``cls`` built with :func:`LesionResponseLib.errors.describe`."""
    return cls(describe(problem, path=path, fix=fix))
