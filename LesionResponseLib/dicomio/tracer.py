"""Which radiopharmaceutical a PET series shows, and whether this software is made for it.

The segmentation model, the response categories and the physiological-uptake rules are made for
somatostatin-receptor (SSTR) PET (docs/DOMAIN.md §5): [68Ga]Ga-DOTATATE, [68Ga]Ga-DOTATOC, [68Ga]Ga-DOTANOC and
[64Cu]Cu-DOTATATE. The tracer is read from the first RadiopharmaceuticalInformationSequence (0054,0016) item:

1. the agent: RadiopharmaceuticalCodeSequence (0054,0304), a PS3.16 CID 4021 code (Dotatate Ga^68^ SCT 724025002,
   Edotreotide Ga^68^ UMLS C2713594; any other code is another tracer, named by its CodeMeaning), else the words
   of Radiopharmaceutical (0018,0031) and of the code's meaning (DOTATATE, DOTA-TATE, oxodotreotide, NETSPOT,
   Detectnet; DOTATOC, edotreotide, SomaKit TOC; DOTANOC; other agents: FDG, PSMA, choline, ...);
2. the nuclide: RadionuclideCodeSequence (:mod:`nuclides`), else RadionuclideHalfLife within 1 % of a known one,
   else the text (Ga-68, 68Ga, Ga68, Cu-64, F-18, ...).

An SSTR agent with a nuclide of the list passes. A named other agent (by code or text) or an SSTR agent with
another nuclide (e.g. [177Lu]Lu-DOTATATE, a therapy) is refused (:class:`TracerError`) unless the caller overrides
it on purpose (``allow_other=True``, recorded). Only what the headers name is refused: when nothing names the
agent, the series passes with a warning that names the nuclide (and says so when no SSTR PET tracer of the list
carries it, e.g. F-18): Ga-68 also labels PSMA ligands, and F-18 SSTR tracers exist, so the nuclide alone cannot
tell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from LesionResponseLib.config import find_setting
from LesionResponseLib.dicomio.errors import DicomInputError, fail, tag
from LesionResponseLib.dicomio.index import Instance
from LesionResponseLib.dicomio.nuclides import NUCLIDES, Nuclide, nuclide_for_code

#: CLI flag that accepts another tracer, and its help (one definition for every command and message).
OVERRIDE_FLAG = find_setting("input.allow_other_tracer").flag
OVERRIDE_HELP = find_setting("input.allow_other_tracer").help
HALF_LIFE_MATCH = 0.01  # a stated half-life within 1 % of a nuclide's names it (Ga-68 4062.6 s vs F-18 6586 s)


@dataclass(frozen=True)
class Agent:
    name: str  # e.g. "DOTATATE"
    words: tuple[str, ...]  # lower-case alphanumeric fragments naming it in free text
    codes: tuple[tuple[str, str, str], ...] = ()  # (CodeValue, CodingSchemeDesignator, CodeMeaning), CID 4021
    sstr: bool = True


SSTR_NUCLIDES = ("Ga-68", "Cu-64")
AGENTS = (
    Agent("DOTATATE", ("dotatate", "octreotate", "oxodotreotide", "netspot", "detectnet"), (("724025002", "SCT", "Dotatate Ga^68^"),)),
    Agent("DOTATOC", ("dotatoc", "edotreotide", "tyr3octreotide", "somakit"), (("C2713594", "UMLS", "Edotreotide Ga^68^"),)),
    Agent("DOTANOC", ("dotanoc", "nal3octreotide", "nai3octreotide")),
    Agent("FDG", ("fdg", "fluorodeoxyglucose", "fluordeoxyglucose", "deoxyglucose"), (("35321007", "SCT", "Fluorodeoxyglucose F^18^"),),
          False),
    Agent("PSMA", ("psma", "piflufolastat", "dcfpyl", "gozetotide"), (), False),
    Agent("choline", ("choline",), (), False),
    Agent("fluciclovine", ("fluciclovine",), (), False),
    Agent("sodium fluoride", ("sodiumfluoride",), (), False),
    Agent("DOPA", ("dopa",), (), False),
    Agent("FES", ("fluoroestradiol",), (), False),
    Agent("FLT", ("fluorothymidine",), (), False),
    Agent("FAPI", ("fapi",), (), False),
)
#: Text naming a nuclide: symbol and mass number in any order, or the element's name.
_NUCLIDE_WORDS = {n.name: (f"{n.symbol.lower()}{n.mass_number}", f"{n.mass_number}{n.symbol.lower()}",
                           n.element.lower()) for n in NUCLIDES}


_GA68 = next(n for n in NUCLIDES if n.name == "Ga-68")


class TracerError(DicomInputError):
    """The PET shows a radiopharmaceutical this software is not made for."""


@dataclass(frozen=True)
class TracerFinding:
    """What the headers say about the tracer and whether it may be analysed."""

    name: str | None  # e.g. "[68Ga]Ga-DOTATATE", the header's text for other tracers, None when not stated
    nuclide: str | None  # e.g. "Ga-68"
    sstr: bool  # an SSTR PET tracer (or none named with an SSTR nuclide: then ``warning`` says so)
    source: str  # the tags it was read from
    warning: str | None = None


def _alnum(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _item(inst: Instance):
    seq = inst.get("RadiopharmaceuticalInformationSequence")
    return seq[0] if seq else None


def _code(item, keyword: str):
    seq = item.get(keyword) if item is not None else None
    return seq[0] if seq else None


def _nuclide(item, text: str) -> tuple[Nuclide | None, str]:
    code = _code(item, "RadionuclideCodeSequence")
    if code is not None:
        found = nuclide_for_code(code.get("CodeValue", ""), code.get("CodingSchemeDesignator", ""))
        if found is not None:
            return found, tag("RadionuclideCodeSequence")
    try:
        half_life = float(item.get("RadionuclideHalfLife")) if item is not None else None
    except (TypeError, ValueError):
        half_life = None
    if half_life:
        for nuclide in NUCLIDES:
            if abs(half_life / nuclide.half_life_s - 1) <= HALF_LIFE_MATCH:
                return nuclide, tag("RadionuclideHalfLife")
    for nuclide in NUCLIDES:
        if any(word in text for word in _NUCLIDE_WORDS[nuclide.name][:2]):
            return nuclide, tag("Radiopharmaceutical")
    return None, ""


def _agent(item) -> tuple[Agent | None, str, str]:
    """(agent, what the headers call it, the tag it came from)."""
    code = _code(item, "RadiopharmaceuticalCodeSequence")
    text = str(item.get("Radiopharmaceutical", "") or "") if item is not None else ""
    if code is not None:
        key = (str(code.get("CodeValue", "")).strip(), str(code.get("CodingSchemeDesignator", "")).strip())
        meaning = str(code.get("CodeMeaning", "") or "")
        for agent in AGENTS:
            if key in [c[:2] for c in agent.codes]:
                return agent, meaning or agent.name, tag("RadiopharmaceuticalCodeSequence")
        by_words = _agent_in(meaning)
        label = f"{meaning or '?'} (code {key[0]}, {key[1]})"
        if by_words is not None:
            return by_words, label, tag("RadiopharmaceuticalCodeSequence")
        return Agent(label, (), (), False), label, tag("RadiopharmaceuticalCodeSequence")
    agent = _agent_in(text)
    if agent is not None:
        return agent, text, tag("Radiopharmaceutical")
    residue = _alnum(text)
    for words in _NUCLIDE_WORDS.values():
        for word in words:
            residue = residue.replace(word, "")
    if residue.strip("0123456789"):  # text that names something besides a nuclide: an agent we do not know
        return Agent(text, (), (), False), text, tag("Radiopharmaceutical")
    return None, text, ""


def _agent_in(text: str) -> Agent | None:
    flat = _alnum(text)
    for agent in AGENTS:
        if any(word in flat for word in agent.words):
            return agent
    return None


def identify_tracer(inst: Instance) -> TracerFinding:
    """The tracer of a PET series from the headers of one of its files (module docstring)."""
    item = _item(inst)
    agent, called, agent_source = _agent(item)
    code = _code(item, "RadiopharmaceuticalCodeSequence")
    text = _alnum(" ".join(str(v) for v in (called, item.get("Radiopharmaceutical", "") if item else "",
                                            code.get("CodeMeaning", "") if code is not None else "")))
    nuclide, nuclide_source = _nuclide(item, text)
    source = ", ".join(s for s in (agent_source, nuclide_source) if s) or "no radiopharmaceutical tags"
    nuclide_name = nuclide.name if nuclide else None
    if agent is None:  # nothing names the agent: passes, with a warning naming what is known
        unusual = nuclide_name not in (*SSTR_NUCLIDES, None)
        warning = (f"the radiopharmaceutical is not named ({tag('RadiopharmaceuticalCodeSequence')} and "
                   f"{tag('Radiopharmaceutical')} empty){'; nuclide ' + nuclide_name if nuclide_name else ''}: "
                   "analysed as somatostatin-receptor PET"
                   + (f" although no SSTR PET tracer of this software is labelled with {nuclide_name}: check the "
                      "tracer" if unusual else ""))
        return TracerFinding(None, nuclide_name, True, source, warning)
    if agent.sstr and nuclide_name in SSTR_NUCLIDES:
        return TracerFinding(_sstr_name(agent.name, nuclide), nuclide_name, True, source)
    if agent.sstr and nuclide_name is None:
        return TracerFinding(f"[68Ga]Ga-{agent.name}", "Ga-68", True, source,
                             f"the radionuclide is not stated: {agent.name} taken as labelled with Ga-68")
    name = _sstr_name(agent.name, nuclide) if agent.sstr and nuclide else called.strip() or agent.name
    return TracerFinding(name, nuclide_name, False, source)


def _sstr_name(agent: str, nuclide: Nuclide | None) -> str:
    """``[68Ga]Ga-DOTATATE`` style name of an agent labelled with ``nuclide``."""
    if nuclide is None:
        return agent
    return f"[{nuclide.mass_number}{nuclide.symbol}]{nuclide.symbol}-{agent}"


def tracer_label(info) -> str:
    """A time point's tracer as the headers name it, e.g. '[68Ga]Ga-DOTATATE (Ga-68)', flagged when analysed on
    the user's request (``TimePointInfo`` radiopharmaceutical, radionuclide, tracer_override)."""
    name = info.radiopharmaceutical or "radiopharmaceutical not named"
    nuclide = f" ({info.radionuclide})" if info.radionuclide and info.radionuclide not in name else ""
    return name + nuclide + (" — not SSTR PET, analysed on request" if info.tracer_override else "")


def tracer_code(name: str | None) -> tuple[str, str, str] | None:
    """The CID 4021 code (value, scheme, meaning) of a tracer name :func:`identify_tracer` gave, when it has one
    (the coded SSTR agents' codes name their Ga-68 form; a code's meaning names the agent it found)."""
    for agent in AGENTS:
        for code in agent.codes:
            if name in (code[2], _sstr_name(agent.name, _GA68)):
                return code
    return None


def check_tracer(inst: Instance, *, allow_other: bool = False) -> TracerFinding:
    """:func:`identify_tracer`, refused with :class:`TracerError` when not SSTR PET unless ``allow_other``."""
    finding = identify_tracer(inst)
    if finding.sstr or allow_other:
        return finding
    raise fail(TracerError, inst.path, f"the PET shows {finding.name} ({finding.source}), not a somatostatin-receptor "
               "tracer ([68Ga]Ga-DOTATATE, -DOTATOC, -DOTANOC, [64Cu]Cu-DOTATATE): the segmentation model, the "
               "response categories and the physiological-uptake rules are made for SSTR PET only",
               f"Analyse SSTR PET; to analyse this scan anyway pass {OVERRIDE_FLAG} (allow_other_tracer=True): it is "
               "recorded and flagged in the report.")
