"""Radionuclide half-lives by RadionuclideCodeSequence (0054,0300) code, for headers without RadionuclideHalfLife.

Codes are the SNOMED CT concepts of DICOM PS3.16 CID 4020 "PET Radionuclide" (and CID 18 "Isotopes in
Radiopharmaceuticals" for Lu-177), taken from pydicom's copy of PS3.16 (``pydicom.sr.codedict.codes``); a legacy
SNOMED RT code (e.g. ``C-131A3`` for Ga-68, ``C-111A1`` for F-18) matches its SNOMED CT concept through
pydicom's SRT→SCT mapping. Half-lives are NNDC / DDEP recommended values (Laboratoire National Henri Becquerel,
"Recommended data"), in seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from LesionResponseLib.dicomio.suv import F18_HALF_LIFE_S, GA68_HALF_LIFE_S, LU177_HALF_LIFE_S


@dataclass(frozen=True)
class Nuclide:
    name: str  # e.g. "Ga-68"
    concept: str  # attribute of pydicom's ``codes.SCT`` (PS3.16 concept keyword)
    half_life_s: float

    element: str  # English name, as in the code meaning "^68^Gallium"

    @property
    def symbol(self) -> str:
        return self.name.split("-")[0]

    @property
    def mass_number(self) -> str:
        return self.name.split("-")[1]


NUCLIDES = (
    Nuclide("F-18", "_18Fluorine", F18_HALF_LIFE_S, "Fluorine"),  # 109.77 min
    Nuclide("Ga-68", "_68Gallium", GA68_HALF_LIFE_S, "Gallium"),  # 67.71 min
    Nuclide("Cu-64", "_64Copper", 12.701 * 3600, "Copper"),  # 12.701 h
    Nuclide("Zr-89", "_89Zirconium", 78.41 * 3600, "Zirconium"),  # 78.41 h
    Nuclide("Lu-177", "_177Lutetium", LU177_HALF_LIFE_S, "Lutetium"),  # 6.647 d
    Nuclide("C-11", "_11Carbon", 20.364 * 60, "Carbon"),  # 20.364 min
    Nuclide("N-13", "_13Nitrogen", 9.965 * 60, "Nitrogen"),  # 9.965 min
    Nuclide("O-15", "_15Oxygen", 122.24, "Oxygen"),  # 122.24 s
    Nuclide("Rb-82", "_82Rubidium", 1.2575 * 60, "Rubidium"),  # 1.2575 min
    Nuclide("I-124", "_124Iodine", 4.1760 * 86400, "Iodine"),  # 4.1760 d
    Nuclide("Ge-68", "_68Germanium", 270.95 * 86400, "Germanium"),  # 270.95 d (calibration sources)
)


def nuclide_for_code(value: str, scheme: str) -> Nuclide | None:
    """The nuclide of a RadionuclideCodeSequence item (SCT or legacy SRT code), or None when not in the table."""
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    try:
        given = Code(str(value).strip(), str(scheme).strip() or "SCT", "")
    except (TypeError, ValueError):
        return None
    for nuclide in NUCLIDES:
        if given == getattr(codes.SCT, nuclide.concept):  # Code equality maps SRT codes to SCT
            return nuclide
    return None


def meaning_contradicts(nuclide: Nuclide, meaning: str) -> bool:
    """Whether a CodeMeaning such as '^68^Gallium' or 'Ga-68' names another nuclide (mass number or element)."""
    numbers = re.findall(r"\d+", meaning or "")
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", meaning or "")]
    other_mass = bool(numbers) and nuclide.mass_number not in numbers
    other_element = bool(words) and not {nuclide.symbol.lower(), nuclide.element.lower()} & set(words)
    return other_mass or other_element
