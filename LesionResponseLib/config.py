"""Every tunable of the analysis, in one place: one frozen dataclass per section, each field with its default,
unit and help text.

:class:`AnalysisParameters` nests the sections (``params.matching.dilation_mm``). Commands, the Slicer module,
the web app and the stage cache keys read the settings from here (:func:`settings` lists them with their
metadata); ``analysis.json`` stores them nested (:meth:`AnalysisParameters.to_dict`), and the flat form written
by schema 1 is migrated on reading (:func:`migrate_flat`).

A field is declared with :func:`setting`: its default, ``help`` (one sentence a user reads in ``--help``), the
``unit``, and where they apply ``choices``, ``minimum``/``maximum`` and the command-line ``flag`` (default
``--<section>-<name>``; a ``--x/--y`` pair for booleans). Why a default has its value is the comment above it.

A run's parameters (:func:`resolve_parameters`) are, by precedence: the built-in defaults < the site config file
(:func:`site_config_path`: ``$LESION_RESPONSE_CONFIG``, else the user config folder's
``lesion-response/config.toml``) < a settings file given with ``--config`` (TOML, or an earlier analysis.json) <
the command's options and ``--set section.name=value``. :attr:`AnalysisParameters.sources` keeps where each value
came from; analysis.json records it for the values that are not the default (``parameter_sources``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from LesionResponseLib.errors import LesionResponseError, describe


class ConfigError(LesionResponseError):
    """A setting's name or value is not valid (names the setting, the value and what is allowed)."""


def setting(default: Any, *, help: str, unit: str | None = None, choices: tuple[str, ...] | None = None,
            minimum: float | None = None, maximum: float | None = None, flag: str | None = None) -> Any:
    """A config field: its default and the metadata every face reads (see the module docstring)."""
    return field(default=default, metadata={"help": help, "unit": unit, "choices": choices, "minimum": minimum,
                                            "maximum": maximum, "flag": flag})


class _Section:
    """Base of the frozen section dataclasses: validation of choices and bounds on construction."""

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for spec in _section_settings(type(self)):
            spec.check(getattr(self, spec.name))


#: Categories' reference scans and measures (analysis.response).
REFERENCES: tuple[str, ...] = ("baseline", "previous", "nadir")
MEASURES: tuple[str, ...] = ("suv_total", "suv_total_pvc")


# ------------------------------------------------------------------------------------------------ sections
@dataclass(frozen=True)
class InputConfig(_Section):
    """How the DICOM input becomes SUV (dicomio)."""

    SECTION: ClassVar[str] = "input"
    weight_kg: float | None = setting(None, help="Body weight used instead of PatientWeight (0010,1030) for every "
                                      "time point, e.g. when it is missing.", unit="kg", minimum=1.0, maximum=500.0,
                                      flag="--weight-kg")
    # The model, the categories and the physiological-uptake rules are made for somatostatin-receptor PET
    # (dicomio.tracer); another tracer named in the headers is refused unless the user says so on purpose.
    allow_other_tracer: bool = setting(False, help="Analyse a PET whose radiopharmaceutical is not a somatostatin-"
                                       "receptor tracer (refused otherwise: the model, categories and physiological "
                                       "rules are made for SSTR PET); recorded and flagged in the report.",
                                       flag="--allow-other-tracer")


@dataclass(frozen=True)
class SegmentationConfig(_Section):
    """Lesion-ROIs per time point (segmentation)."""

    SECTION: ClassVar[str] = "segmentation"
    method: str = setting("model", help="'model' (the shipped MONAI model or --model), 'threshold', 'truth' "
                          "(phantom masks from --labels) or a model file.", flag="--segmentation")
    model_path: str | None = setting(None, help="Model file for the 'model' method (default: the shipped one); a "
                                     "site's own model from `train --from-analyses`, set in the site config file to "
                                     "make it the site default.", flag="--model")
    labels_dir: str | None = setting(None, help="Folder of label maps tp{k}.nii.gz (or tp{k}_lesions.nii.gz) used "
                                     "instead of segmenting.", flag="--labels")
    # 0.1 mL: two 4 mm PET voxels; smaller components are noise more often than lesions (MODEL_CARD).
    min_roi_volume_ml: float = setting(0.1, help="Smallest lesion-ROI kept by the segmentation.", unit="mL",
                                       minimum=0.0, flag="--min-volume-ml")
    # 0 keeps every small ROI: a small node with uptake below the liver's is still non-physiological uptake; on
    # the harder phantom patients the Krenning "equivocal" rule dropped 36 true ROIs for 5 false ones, all
    # pituitary, which drop_intracranial removes (docs: evaluation).
    equivocal_max_volume_ml: float = setting(0.0, help="Model ROIs smaller than this whose SUVmax is not above the "
                                             "liver SUVmean are dropped as equivocal (0: keep all).", unit="mL",
                                             minimum=0.0)
    # The pituitary's physiological uptake (docs/DOMAIN.md §5) and meningiomas lie in the cranial cavity; a reader
    # adds an intracranial metastasis (rare in NET) in the review.
    drop_intracranial: bool = setting(True, help="Drop model ROIs lying mostly in the cranial cavity found on the CT.",
                                      flag="--drop-intracranial/--keep-intracranial")


@dataclass(frozen=True)
class QuantificationConfig(_Section):
    """Per-ROI measures (analysis.quantify)."""

    SECTION: ClassVar[str] = "quantification"
    # 5-7 mm on current PET/CT: set the scanner's measured value.
    psf_fwhm_mm: float = setting(6.0, help="Reconstructed PET resolution (FWHM), used by the partial-volume-"
                                 "corrected SUVtotal and the prior-guided search.", unit="mm", minimum=0.5,
                                 maximum=30.0, flag="--psf-fwhm-mm")
    # 1 mm: the shipped model's ROIs on development phantoms (seeds 1, 4400: 154 ROI x scans) have a log volume
    # error vs truth of SD 0.61 / 0.53 / 0.29 / 0.14 for lesions of < 0.5 / 0.5-2 / 2-10 / > 10 mL: 3 x shift / radius
    # with a shift of 0.8-1.1 mm at every size (a boundary placed coherently ~1/4 voxel off). A different model or
    # reader contours: measure it the same way (docs/confidence-and-review-queue.md).
    contour_sd_mm: float = setting(1.0, help="SD of where a ROI's boundary lies around the lesion's true surface "
                                   "(one shift of the whole boundary), for the SUVtotal uncertainty.", unit="mm",
                                   minimum=0.0, maximum=10.0)


@dataclass(frozen=True)
class RegistrationConfig(_Section):
    """Registration of every follow-up onto the baseline (tracking.registration)."""

    SECTION: ClassVar[str] = "registration"
    # auto: elastix when an engine is available (SlicerElastix, the elastix program, itk-elastix), else the
    # SimpleITK B-spline, 2.4-5.4x slower and 1.7x the error on the phantom (benchmarks/bench_registration.py).
    # The methods and their engines are tracking.registration.METHODS, checked when the registration runs.
    method: str = setting("auto", help="auto (elastix when an engine is available, else the SimpleITK B-spline), "
                          "or a method of `lesion-response register --help`.", flag="--registration")


@dataclass(frozen=True)
class MatchingConfig(_Section):
    """Links between ROIs of different time points (tracking.matching)."""

    SECTION: ClassVar[str] = "matching"
    # 8 mm: two 4 mm PET voxels, so a lesion survives a residual registration error of ~one voxel plus a
    # partial-volume edge shift; link recall was 97.5 % at 5 mm and 100 % from 6 to 10 mm (bench_tracking.py).
    dilation_mm: float = setting(8.0, help="Conformal dilation of ROIs before matching.", unit="mm", minimum=0.0,
                                 flag="--dilation-mm")
    # 30 mm: centroid shifts of big responding or splitting lesions stay below it; registration error is ~2-3 mm.
    max_distance_mm: float = setting(30.0, help="Largest centroid distance of matched ROIs after registration.",
                                     unit="mm", minimum=0.0, flag="--max-distance-mm")
    # 0.05: any real contact of the dilated ROIs; the distance term of the cost separates neighbours.
    min_overlap: float = setting(0.05, help="Smallest overlap coefficient of matched dilated ROIs.", minimum=0.0,
                                 maximum=1.0, flag="--min-overlap")
    # 0.25: the phantom's split halves, pushed apart by 14 mm, keep ~1/3 of their dilated volume inside the
    # parent's; a small new lesion only touching a big one stays below it.
    containment_min: float = setting(0.25, help="Share of a left-over ROI's dilated volume that must lie inside an "
                                     "assigned partner for it to join as a split/merge branch.", minimum=0.0,
                                     maximum=1.0)
    # 2.5 mm: the registration error at lesion centres published for the method (2.3-2.6 mm, docs/DOMAIN.md §2) and
    # measured for elastix on the phantoms (2.3 mm mean, benchmarks/bench_tracking.py). Sets how far apart two ROIs
    # may lie and still be one lesion that no split or merge may take (tracking.matching, "own partners").
    registration_error_mm: float = setting(2.5, help="Mean registration error at lesion centres: ROIs of two scans "
                                           "that are each other's nearest within a few times this (plus their "
                                           "change of radius) are one lesion, never another lesion's split or merge "
                                           "branch.", unit="mm", minimum=0.0)


@dataclass(frozen=True)
class PriorSearchConfig(_Section):
    """The prior-guided search where a track has no ROI (segmentation.prior_guided, workflow.prior_search)."""

    SECTION: ClassVar[str] = "prior_search"
    enabled: bool = setting(True, help="Look for each track's lesion where the registration puts it at time points "
                            "without a ROI (marked prior-guided).", flag="--prior-search/--no-prior-search")
    # 10 mm: the elastix error at lesion centres is 2.3 mm mean (docs/DOMAIN.md §2 publishes 2.3-2.6 mm), its
    # tail up to ~3x the mean, plus one 4 mm voxel for placing mapped voxel centres on the target grid.
    margin_mm: float = setting(10.0, help="Growth of the mapped ROI that makes the search region.", unit="mm",
                               minimum=0.0)
    false_alarm: float = setting(0.01, help="False-alarm probability per search (random-field threshold).",
                                 minimum=1e-6, maximum=0.5)
    # At a place where a lesion was, weaker evidence suffices; 0.2 keeps a 10x margin over the highest probability
    # measured where the lesion had truly gone (0.02 on development patients).
    model_probability: float = setting(0.2, help="Model lesion probability in the search region that counts as a "
                                       "find where the uptake test finds nothing (0: off).", minimum=0.0,
                                       maximum=1.0)
    # Off: on an unseen patient the one candidate confirmed was an adrenal, then found on all 7 scans.
    candidates: bool = setting(False, help="Also confirm components the model found below the minimum ROI volume "
                               "when the search finds them at an adjacent time point.",
                               flag="--candidates/--no-candidates")
    skip_intracranial: bool = setting(True, help="No search from a ROI inside the cranial cavity found on the CT.")
    skip_physiological: bool = setting(True, help="No search from a ROI, and no find kept, lying mostly on the "
                                       "model's physiological-uptake output.")


@dataclass(frozen=True)
class ResponseConfig(_Section):
    """Categories per track and follow-up (analysis.response, docs/DOMAIN.md §1)."""

    SECTION: ClassVar[str] = "response"
    # The corrected value is the default: a small ROI's SUVmean x volume swings by +-40 % with where its contour
    # falls (one 4 mm voxel is 13 % of a 0.5 mL ROI), which calls a constant lesion increasing or decreasing.
    measure: Literal["suv_total", "suv_total_pvc"] = setting(
        "suv_total_pvc", help="ROI quantity that drives the categories: suv_total_pvc (partial-volume corrected) or "
        "suv_total (SUVmean x volume, the paper's).", choices=MEASURES, flag="--measure")
    reference: Literal["baseline", "previous", "nadir"] = setting(
        "baseline", help="Scan each follow-up's change is measured against.", choices=REFERENCES,
        flag="--reference")
    # The paper's thresholds (docs/DOMAIN.md §1).
    decrease_threshold_pct: float = setting(-30.0, help="Change below which a lesion is 'decreasing'.", unit="%",
                                            maximum=0.0, flag="--decrease")
    increase_threshold_pct: float = setting(30.0, help="Change above which a lesion is 'increasing'.", unit="%",
                                            minimum=0.0, flag="--increase")
    # 90 %: the calibration target (a 90 % interval covers 85-95 % of true changes); a call whose interval
    # holds a threshold is marked indeterminate beside its category.
    interval_level: float = setting(0.9, help="Confidence level of each ΔSUVtotal interval; a category whose interval "
                                    "holds a threshold is marked indeterminate.", minimum=0.5, maximum=0.999,
                                    flag="--interval-level")


@dataclass(frozen=True)
class ReferenceConfig(_Section):
    """Reference regions of normal liver and spleen uptake per time point (analysis.reference_regions): the lesion-to-
    liver and -spleen ratios and the Krenning-like grade."""

    SECTION: ClassVar[str] = "reference"
    # PERCIST 1.0 (Wahl et al., J Nucl Med 2009;50:122S-150S): a 3 cm diameter sphere in normal right-lobe liver.
    liver_diameter_mm: float = setting(30.0, help="Diameter of the liver reference sphere, placed in normal "
                                       "right-lobe liver.", unit="mm", minimum=10.0, maximum=60.0)
    # The spleen is ~4 cm thick: a 2 cm sphere with its margin (1.5 PSF FWHM to every edge) fits where 3 cm often
    # does not; its mean over ~65 voxels of 4 mm still has a noise error of ~2 %.
    spleen_diameter_mm: float = setting(20.0, help="Diameter of the spleen reference sphere, placed in normal "
                                        "spleen.", unit="mm", minimum=10.0, maximum=60.0)


SECTIONS: tuple[type[_Section], ...] = (InputConfig, SegmentationConfig, QuantificationConfig, RegistrationConfig,
                                        MatchingConfig, PriorSearchConfig, ResponseConfig, ReferenceConfig)


@dataclass(frozen=True)
class AnalysisParameters:
    """Every tunable of the analysis, by section. Stored in analysis.json (``parameters``)."""

    input: InputConfig = field(default_factory=InputConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    quantification: QuantificationConfig = field(default_factory=QuantificationConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    prior_search: PriorSearchConfig = field(default_factory=PriorSearchConfig)
    response: ResponseConfig = field(default_factory=ResponseConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    # Where each value that differs from the built-in default came from (``{"matching.dilation_mm": "--config
    # site.toml"}``): written to analysis.json beside the parameters, not part of them (no cache key reads it).
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested JSON form: ``{section: {name: value}}``."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in _section_names()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnalysisParameters:
        """From the nested form, or the flat form of schema 1 (migrated); unknown names are refused."""
        return cls().updated(flatten(migrate_flat(data) if is_flat(data) else data))

    def value(self, path: str) -> Any:
        """The value of ``section.name``."""
        spec = find_setting(path)
        return getattr(getattr(self, spec.section), spec.name)

    def updated(self, values: Mapping[str, Any], *, source: str | None = None) -> AnalysisParameters:
        """A copy with ``{"section.name": value}`` set (values validated; strings parsed for typed fields);
        ``source`` (e.g. ``"--config site.toml"``) is recorded for those settings in :attr:`sources`."""
        changes: dict[str, dict[str, Any]] = {}
        for path, value in values.items():
            spec = find_setting(path)
            changes.setdefault(spec.section, {})[spec.name] = spec.coerce(value)
        sections = {name: dataclasses.replace(getattr(self, name), **fields_) for name, fields_ in changes.items()}
        sources = {**self.sources, **dict.fromkeys(values, source)} if source else self.sources
        return dataclasses.replace(self, **sections, sources=sources)

    def non_default_sources(self) -> dict[str, str]:
        """``section.name`` → where its value came from, for the values that differ from the built-in default
        (a value set by no recorded source says ``"program"``: a library caller or the pipeline set it)."""
        return {spec.path: self.sources.get(spec.path, "program") for spec in settings()
                if self.value(spec.path) != spec.default}

    def digest_of(self, *sections: str) -> str:
        """Canonical JSON of ``sections`` (for stage cache keys: a stage keys on the sections it reads)."""
        return json.dumps({name: dataclasses.asdict(getattr(self, name)) for name in sections}, sort_keys=True)


# ------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Setting:
    """One field of one section with what every face needs to show, parse and check it."""

    section: str
    name: str
    type: Any  # the resolved annotation, e.g. float, float | None, bool, Literal[...]
    default: Any
    help: str
    unit: str | None = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    flag: str | None = None

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def base_type(self) -> type:
        """``float`` for ``float | None``, ``str`` for a Literal, else the type."""
        args = [a for a in typing.get_args(self.type) if a is not type(None)]
        if typing.get_origin(self.type) is Literal:
            return str
        return args[0] if args else self.type

    @property
    def optional(self) -> bool:
        return type(None) in typing.get_args(self.type)

    @property
    def cli_flag(self) -> str:
        """The command-line flag(s): ``--x`` or, for booleans, ``--x/--no-x``."""
        if self.flag:
            return self.flag
        name = f"--{self.section}-{self.name}".replace("_", "-")
        return f"{name}/--no-{name[2:]}" if self.base_type is bool else name

    def coerce(self, value: Any) -> Any:
        """``value`` (a string from a command line or config file, or a typed value) as this field's type."""
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if self.optional:
                return None
            raise ConfigError(describe(f"{self.path} cannot be empty", fix=f"Give a {self.base_type.__name__}."))
        kind = self.base_type
        try:
            if kind is bool:
                parsed = _parse_bool(value)
            elif kind is float:
                parsed = float(value)
            elif kind is int:
                parsed = int(value)
            else:
                parsed = str(value)
        except ValueError:
            raise ConfigError(describe(f"{self.path}: {value!r} is not a {kind.__name__}",
                                       fix=f"{self.help} ({self.describe_allowed()})")) from None
        self.check(parsed)
        return parsed

    def check(self, value: Any) -> None:
        """Raise :class:`ConfigError` when ``value`` is outside the choices or bounds."""
        if value is None:
            return
        bad = ((self.choices and value not in self.choices)
               or (self.minimum is not None and value < self.minimum)
               or (self.maximum is not None and value > self.maximum))
        if bad:
            raise ConfigError(describe(f"{self.path} = {value!r} is not allowed", fix=f"Use {self.describe_allowed()}."))

    @property
    def long_help(self) -> str:
        """The help and what is allowed (choices, bounds with the unit) where the type alone does not say it."""
        if self.choices or self.minimum is not None or self.maximum is not None:
            return f"{self.help} Allowed: {self.describe_allowed()}."
        return self.help + (f" Unit: {self.unit}." if self.unit else "")

    def describe_allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        low = "" if self.minimum is None else f"≥ {self.minimum:g}"
        high = "" if self.maximum is None else f"≤ {self.maximum:g}"
        bounds = " and ".join(x for x in (low, high) if x)
        unit = f" {self.unit}" if self.unit else ""
        return f"a {self.base_type.__name__}{' ' + bounds if bounds else ''}{unit}"


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _section_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(AnalysisParameters) if f.name != "sources")


@functools.cache
def _section_settings(cls: type[_Section]) -> tuple[Setting, ...]:
    hints = typing.get_type_hints(cls)
    return tuple(Setting(section=cls.SECTION, name=f.name, type=hints[f.name], default=f.default, **f.metadata)
                 for f in dataclasses.fields(cls))


def settings() -> list[Setting]:
    """Every setting of every section, in declaration order."""
    return list(_all_settings())


@functools.cache
def _all_settings() -> tuple[Setting, ...]:  # the sections are fixed once imported; the faces ask often
    return tuple(spec for cls in SECTIONS for spec in _section_settings(cls))


def find_setting(path: str) -> Setting:
    """The setting ``section.name`` (a :class:`ConfigError` listing the valid names otherwise)."""
    for spec in settings():
        if spec.path == path:
            return spec
    raise ConfigError(describe(f"unknown setting {path!r}",
                               fix="Use one of " + ", ".join(s.path for s in settings())))


def flatten(nested: Mapping[str, Any]) -> dict[str, Any]:
    """``{section: {name: value}}`` → ``{"section.name": value}`` (unknown sections are refused)."""
    valid = _section_names()
    flat: dict[str, Any] = {}
    for section, values in nested.items():
        if section not in valid or not isinstance(values, Mapping):
            raise ConfigError(describe(f"unknown settings section {section!r}", fix="Use one of " + ", ".join(valid)))
        flat.update({f"{section}.{name}": value for name, value in values.items()})
    return flat


# ------------------------------------------------------------------------------------------------ schema 1
#: analysis.json schema 1 stored the parameters flat; each name's place in the sections.
FLAT_NAMES: dict[str, str] = {
    "segmentation_method": "segmentation.method", "model_path": "segmentation.model_path",
    "min_roi_volume_ml": "segmentation.min_roi_volume_ml",
    "equivocal_max_volume_ml": "segmentation.equivocal_max_volume_ml",
    "drop_intracranial_rois": "segmentation.drop_intracranial", "registration_method": "registration.method",
    "dilation_mm": "matching.dilation_mm", "max_match_distance_mm": "matching.max_distance_mm",
    "min_overlap": "matching.min_overlap", "reference": "response.reference",
    "psf_fwhm_mm": "quantification.psf_fwhm_mm", "response_measure": "response.measure",
    "decrease_threshold_pct": "response.decrease_threshold_pct",
    "increase_threshold_pct": "response.increase_threshold_pct", "weight_kg": "input.weight_kg",
    "prior_search": "prior_search.enabled", "prior_search_margin_mm": "prior_search.margin_mm",
    "prior_search_false_alarm": "prior_search.false_alarm",
    "prior_search_model_probability": "prior_search.model_probability",
    "prior_search_candidates": "prior_search.candidates",
    "prior_search_skip_intracranial": "prior_search.skip_intracranial",
    "prior_search_skip_physiological": "prior_search.skip_physiological",
}
#: Keys of schema 1's ``extra`` dict and their settings.
FLAT_EXTRA_NAMES: dict[str, str] = {"containment_min": "matching.containment_min",
                                    "labels_dir": "segmentation.labels_dir"}


def is_flat(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` is schema 1's flat parameter dict: the nested form holds only sections (mappings), the
    flat form values and an ``extra`` mapping (``prior_search`` is a name in both)."""
    return any(name == "extra" or not isinstance(value, Mapping) for name, value in data.items())


def migrate_flat(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Schema 1's flat parameters → the nested form; an unknown name is refused, not dropped."""
    nested: dict[str, dict[str, Any]] = {}

    def put(path: str, value: Any) -> None:
        section, name = path.split(".")
        nested.setdefault(section, {})[name] = value

    for name, value in data.items():
        if name == "extra":
            for key, extra_value in (value or {}).items():
                if key not in FLAT_EXTRA_NAMES:
                    raise ConfigError(describe(f"analysis.json parameters.extra has an unknown key {key!r}",
                                               fix="Remove it, or re-run the analysis with this version."))
                put(FLAT_EXTRA_NAMES[key], extra_value)
        elif name in FLAT_NAMES:
            put(FLAT_NAMES[name], value)
        else:
            raise ConfigError(describe(f"analysis.json parameters has an unknown name {name!r}",
                                       fix="Remove it, or re-run the analysis with this version."))
    return nested


# ------------------------------------------------------------------------------------------------ files
#: Names the site config file (TOML); unset: the user config folder's ``lesion-response/config.toml`` if it exists;
#: set but empty: no site file.
CONFIG_ENV = "LESION_RESPONSE_CONFIG"
#: Folder name of the site config file in the platform's user config folder (platformdirs).
CONFIG_APP = "lesion-response"


def default_site_config_path() -> Path:
    """``<user config folder>/lesion-response/config.toml``: ``~/.config`` (or ``$XDG_CONFIG_HOME``) on Linux,
    ``~/Library/Application Support`` on macOS, ``%LOCALAPPDATA%`` on Windows (platformdirs)."""
    from platformdirs import user_config_path

    return user_config_path(CONFIG_APP, appauthor=False) / "config.toml"


def site_config_path() -> Path | None:
    """The site config file that sets defaults for this user/machine: ``$LESION_RESPONSE_CONFIG`` (it must exist),
    else :func:`default_site_config_path` when it exists, else None."""
    named = os.environ.get(CONFIG_ENV)
    if named is not None:
        if not named.strip():
            return None
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(describe(f"the site config file named by ${CONFIG_ENV} does not exist", path=path,
                                       fix=f"Create it, or unset {CONFIG_ENV}."))
        return path
    path = default_site_config_path()
    return path if path.is_file() else None


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """``{"section.name": value}`` of a TOML settings file (``[section]`` tables of ``name = value``) or of an
    analysis.json's ``parameters`` (either schema: an earlier analysis's settings, to run again with them)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(describe(f"cannot read the settings file ({err.strerror})", path=path,
                                   fix="Give a TOML file of [section] name = value, or an analysis.json.")) from None
    try:
        if path.suffix.lower() == ".json":
            return flatten(AnalysisParameters.from_dict(json.loads(text).get("parameters", {})).to_dict())
        return flatten(_toml_loads(text))
    except ConfigError as err:
        raise ConfigError(describe(str(err), path=path)) from None
    except ValueError as err:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise ConfigError(describe(f"not a valid settings file ({err})", path=path,
                                   fix="Write [section] tables of name = value (TOML), e.g. [matching] "
                                       "dilation_mm = 10.")) from None


def _toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def resolve_parameters(*, config_file: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                       override_source: str = "command line", site: bool = True) -> AnalysisParameters:
    """The parameters of a run, by precedence: built-in defaults < the site file (:func:`site_config_path`) <
    ``config_file`` < ``overrides`` (``{"section.name": value}``); :attr:`AnalysisParameters.sources` says which
    of them set each value."""
    params = AnalysisParameters()
    site_file = site_config_path() if site else None
    if site_file is not None:
        params = _updated_from_file(params, site_file, f"site config {site_file}")
    if config_file is not None:
        params = _updated_from_file(params, config_file, f"--config {config_file}")
    if overrides:
        params = params.updated(overrides, source=override_source)
    return params


def _updated_from_file(params: AnalysisParameters, path: str | Path, source: str) -> AnalysisParameters:
    """``params`` with the settings file's values (an invalid value names the file too)."""
    values = read_settings_file(path)
    try:
        return params.updated(values, source=source)
    except ConfigError as err:
        raise ConfigError(describe(str(err), path=path)) from None


def parse_assignment(text: str) -> tuple[str, str]:
    """``"section.name=value"`` → (``section.name``, ``value``); the setting must exist."""
    path, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(describe(f"{text!r} is not section.name=value",
                                   fix="Write e.g. matching.dilation_mm=10."))
    return find_setting(path.strip()).path, value.strip()
