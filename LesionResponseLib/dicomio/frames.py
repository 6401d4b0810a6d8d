"""Enhanced and legacy-converted multi-frame PET and CT: one classic-looking header per frame.

A multi-frame object (PS3.3 A.56 Enhanced PET, A.70/A.38 legacy-converted and Enhanced CT) keeps what a classic
series repeats per file in functional groups: shared ones (SharedFunctionalGroupsSequence) and one item per frame
(PerFrameFunctionalGroupsSequence), each holding macros such as Plane Position (ImagePositionPatient), Pixel
Value Transformation (RescaleSlope/Intercept), Frame Content (FrameAcquisitionDateTime, FrameAcquisitionDuration)
and, in legacy-converted objects, the Unassigned Shared/Per-Frame Converted Attributes (Units, DecayCorrection,
CorrectedImage, RadiopharmaceuticalInformationSequence, FrameReferenceTime, ...). :func:`frame_headers` flattens
them, per frame, over the top-level attributes (per-frame over shared over top level), so that the selection, the
SUV recipe and the geometry read a frame exactly as they read a classic file. Frame Content's
FrameAcquisitionDateTime and FrameAcquisitionDuration become AcquisitionDateTime and ActualFrameDuration (both
ms), their classic meanings.

True Enhanced PET objects state what classic PET states in Units, CorrectedImage and DecayCorrection with other
attributes (PS3.3 C.8.22); when the classic ones are absent they are derived (:func:`_classic_pet`):
AttenuationCorrected / DecayCorrected YES → CorrectedImage ATTN / DECY; the Real World Value Mapping's
MeasurementUnitsCodeSequence (UCUM ``Bq/ml``, ``{SUVbw}g/ml``, ``cm2/ml``) → Units BQML / GML / CM2ML; and
DecayCorrectionDateTime (PET Frame Correction Factors) is the time the values are decay-corrected to: ADMIN when it
is the injection, else START with that time as the reference (it replaces SeriesDate/SeriesTime).
"""

from __future__ import annotations

from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.tag import Tag

MULTIFRAME_PET = {"1.2.840.10008.5.1.4.1.1.130": "Enhanced PET",
                  "1.2.840.10008.5.1.4.1.1.128.1": "Legacy Converted Enhanced PET"}
MULTIFRAME_CT = {"1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT",
                 "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT"}
FUNCTIONAL_GROUPS = ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")
#: Frame Content attributes with a classic equivalent of the same meaning and unit.
CLASSIC_NAMES = {"FrameAcquisitionDateTime": "AcquisitionDateTime", "FrameAcquisitionDuration": "ActualFrameDuration"}
#: UCUM units of Enhanced PET's Real World Value Mapping → classic Units (PS3.3 C.8.22.1, CID 84).
UCUM_UNITS = {"bq/ml": "BQML", "{suvbw}g/ml": "GML", "cm2/ml": "CM2ML", "{counts}": "CNTS"}


def is_multiframe(ds: Any) -> bool:
    """Whether ``ds`` is a multi-frame image with functional groups."""
    return int(ds.get("NumberOfFrames", 1) or 1) > 1 and "PerFrameFunctionalGroupsSequence" in ds


def frame_headers(ds: Dataset) -> list[Dataset]:
    """One flat header per frame of ``ds`` (module docstring); ``ds`` itself when it is single-frame."""
    if not is_multiframe(ds):
        return [ds]
    base = Dataset()
    for element in ds:
        if element.keyword not in FUNCTIONAL_GROUPS and element.keyword != "PixelData":
            base.add(element)
    shared = ds.get("SharedFunctionalGroupsSequence") or [Dataset()]
    _merge(base, shared[0])
    frames = []
    for item in ds.PerFrameFunctionalGroupsSequence:
        frame = Dataset()
        frame.update(base)
        _merge(frame, item)
        _classic_pet(frame)
        _set(frame, "NumberOfFrames", 1)
        frames.append(frame)
    return frames


def _set(ds: Dataset, keyword: str, value) -> None:
    """Set ``keyword`` with a new element: the frames share their elements with the file's header, so an
    assignment to an existing element would change every frame and the header itself."""
    ds.add_new(Tag(keyword), dictionary_VR(keyword), value)


def _merge(target: Dataset, group_item: Dataset) -> None:
    """The elements of every macro item in a functional-group item, set on ``target`` (later wins)."""
    for macro in group_item:
        if macro.VR != "SQ" or not macro.value:
            continue
        for element in macro.value[0]:
            keyword = CLASSIC_NAMES.get(element.keyword, element.keyword)
            if keyword == "ActualFrameDuration":  # FD in Frame Content, IS (ms) in the classic PET Image module
                _set(target, keyword, None if element.value is None else int(round(float(element.value))))
            elif keyword != element.keyword:
                _set(target, keyword, element.value)
            else:
                target.add(element)


def _classic_pet(frame: Dataset) -> None:
    """Classic Units, CorrectedImage and DecayCorrection of a true Enhanced PET frame (module docstring)."""
    if frame.get("SOPClassUID") != "1.2.840.10008.5.1.4.1.1.130":
        return
    if "CorrectedImage" not in frame:
        flags = {"ATTN": frame.get("AttenuationCorrected"), "DECY": frame.get("DecayCorrected")}
        _set(frame, "CorrectedImage", [name for name, value in flags.items() if str(value or "").upper() == "YES"])
    if "Units" not in frame:
        units = frame.get("MeasurementUnitsCodeSequence")
        if units:
            _set(frame, "Units", UCUM_UNITS.get(str(units[0].get("CodeValue", "")).lower(), str(units[0].CodeValue)))
    if "DecayCorrection" not in frame and frame.get("DecayCorrectionDateTime"):
        reference = str(frame.DecayCorrectionDateTime)
        items = frame.get("RadiopharmaceuticalInformationSequence") or [Dataset()]
        injection = str(items[0].get("RadiopharmaceuticalStartDateTime", "") or "")
        if injection and reference[:14] == injection[:14]:
            _set(frame, "DecayCorrection", "ADMIN")
        else:
            _set(frame, "DecayCorrection", "START")
            _set(frame, "SeriesDate", reference[:8])
            _set(frame, "SeriesTime", reference[8:] or "000000")
