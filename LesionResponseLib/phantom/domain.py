"""Another site's scans: scanner, reconstruction, lesion and uptake options the default phantom never shows.

A :class:`DomainOptions` changes how a patient is imaged and what its lesions and organs look like, never who the
patient is: the seed draws the same anatomy, lesions, trajectories, motion and acquisition as without it, and
every change is drawn from its own random streams (``[seed, 31]`` for the lesions, ``[seed, k, 31]`` for scan
``k``), so ``domain=None`` leaves every existing phantom bit-identical.

What each option stands for (why a model trained on the default phantom may not transfer):

- ``pet_spacing_mm``, ``psf_fwhm_mm``: another scanner and reconstruction (the default: 4 mm voxels, FWHM
  5.5-6.5 mm). Digital PET/CT with PSF modelling reconstructs 2-3 mm voxels at 4-5 mm FWHM.
- ``noise_correlation_mm``: iterative reconstruction correlates the noise over several voxels (the "blotchy"
  texture of OSEM/PSF and regularised reconstructions); the default phantom's noise is white but for a 0.5-voxel
  post-filter. The noise keeps its per-voxel standard deviation; it only gains a correlation length (FWHM, mm).
- ``organ_texture_cov``: real organs are not uniform; a smooth log-normal field (correlation ``TEXTURE_FWHM_MM``)
  with this coefficient of variation modulates the uptake of every tissue.
- ``organ_uptake``: ``(tissue, factor)`` pairs scaling a tissue's mean uptake (another tracer, uptake time or
  patient population: e.g. higher liver and bowel uptake).
- ``lobulated_share``: the share of lesions with a lobulated surface (3-5 bumps of 25-60 % of the radius).
- ``rim_share``: the share of lesions of 16 mm or more that have a necrotic core with rim uptake (profile
  ``rim``: the inner 60 % of the radius at 10 % of the rim's uptake).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from LesionResponseLib.phantom.errors import bad_option

#: Correlation length (FWHM, mm) of the organ texture: a few PET resolution cells, as the lobular and vascular
#: structure of liver and spleen appears on PET.
TEXTURE_FWHM_MM = 15.0
#: Lesions smaller than this diameter (mm) keep their profile: a necrotic core needs room (``lesions``: 24 mm for
#: the default ``necrotic`` profile).
RIM_MIN_DIAMETER_MM = 16.0
LOBES = (3, 5)  # bumps per lobulated lesion
LOBE_AMPLITUDE = (0.25, 0.6)  # of the radius


@dataclass(frozen=True)
class DomainOptions:
    """How another site's scans differ from the default phantom (module docstring); defaults change nothing."""

    pet_spacing_mm: tuple[float, float, float] | None = None
    psf_fwhm_mm: tuple[float, float] | None = None
    noise_correlation_mm: float = 0.0
    organ_texture_cov: float = 0.0
    organ_uptake: tuple[tuple[str, float], ...] = ()
    lobulated_share: float = 0.0
    rim_share: float = 0.0

    def __post_init__(self) -> None:
        from LesionResponseLib.phantom.anatomy import TISSUE_BY_NAME

        if self.pet_spacing_mm is not None and not all(1.0 <= s <= 8.0 for s in self.pet_spacing_mm):
            raise bad_option("pet_spacing_mm", self.pet_spacing_mm, "three voxel sizes of 1-8 mm")
        if self.psf_fwhm_mm is not None and not 1.0 <= self.psf_fwhm_mm[0] <= self.psf_fwhm_mm[1] <= 15.0:
            raise bad_option("psf_fwhm_mm", self.psf_fwhm_mm, "a range (low, high) within 1-15 mm")
        for name, share in (("lobulated_share", self.lobulated_share), ("rim_share", self.rim_share),
                            ("organ_texture_cov", self.organ_texture_cov)):
            if not 0.0 <= share <= 1.0:
                raise bad_option(name, share, "between 0 and 1")
        if not 0.0 <= self.noise_correlation_mm <= 30.0:
            raise bad_option("noise_correlation_mm", self.noise_correlation_mm, "between 0 and 30 mm")
        for tissue, factor in self.organ_uptake:
            if tissue not in TISSUE_BY_NAME or not 0.0 < factor <= 10.0:
                raise bad_option("organ_uptake", (tissue, factor), "(tissue, factor > 0) with a phantom tissue")

    @property
    def default_grid(self) -> bool:
        """Whether the PET is on the default grid (4 mm, the CT grid averaged 2 x 2)."""
        return self.pet_spacing_mm is None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DomainOptions:
        values = dict(data)
        for name in ("pet_spacing_mm", "psf_fwhm_mm"):
            if values.get(name) is not None:
                values[name] = tuple(float(v) for v in values[name])
        values["organ_uptake"] = tuple((str(t), float(f)) for t, f in values.get("organ_uptake", ()))
        return cls(**values)


#: Named domains (``lesion-response phantom --domain NAME``). ``site-b``: the unseen domain of
#: ``benchmarks/bench_site_adaptation.py`` and docs/site-adaptation.md - a digital PET/CT reconstructed on 3 mm
#: voxels at 4.5-5 mm FWHM with PSF-like correlated noise (7 mm), textured organs, higher liver, spleen, bowel and
#: pancreas uptake (another tracer, uptake time or population; still within docs/DOMAIN.md §5's ranges), and lesions
#: that are lobulated (60 %) or necrotic with rim uptake (40 % of those >= 16 mm).
DOMAINS: dict[str, DomainOptions] = {
    "site-b": DomainOptions(pet_spacing_mm=(3.0, 3.0, 3.0), psf_fwhm_mm=(4.5, 5.0), noise_correlation_mm=7.0,
                            organ_texture_cov=0.15,
                            organ_uptake=(("liver", 1.5), ("spleen", 1.2), ("bowel", 1.6), ("pancreas", 1.8),
                                          ("uncinate", 1.3)),
                            lobulated_share=0.6, rim_share=0.4),
}


def domain_named(name: str) -> DomainOptions:
    """The preset ``name`` of :data:`DOMAINS` (a :class:`PhantomError` listing them otherwise)."""
    if name not in DOMAINS:
        raise bad_option("domain", name, "one of " + ", ".join(DOMAINS))
    return DOMAINS[name]


def lesion_rng(seed: int) -> np.random.Generator:
    """The random stream of a patient's lesion changes (its own: the default streams are left as they are)."""
    return np.random.default_rng([seed, 31])


def scan_rng(seed: int, timepoint: int) -> np.random.Generator:
    """The random stream of scan ``timepoint``'s domain changes (PSF, organ texture)."""
    return np.random.default_rng([seed, timepoint, 31])


def random_lobes(rng: np.random.Generator) -> tuple[tuple[float, float, float, float], ...]:
    """3-5 bumps (unit direction x, y, z and amplitude) of a lobulated surface."""
    lobes = []
    for _ in range(int(rng.integers(LOBES[0], LOBES[1] + 1))):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        lobes.append((*(float(v) for v in direction), float(rng.uniform(*LOBE_AMPLITUDE))))
    return tuple(lobes)


def apply_to_lesions(lesions: list, domain: DomainOptions, rng: np.random.Generator) -> None:
    """Make lesions lobulated and rim-enhancing (in place) as ``domain`` asks; split and merge lesions keep their
    shape (their geometry is what the tracking truth is built on). Every lesion draws the same numbers whatever it
    ends up as, so one lesion's change never shifts another's."""
    for lesion in lesions:
        lobulated, rim, lobes = rng.random(), rng.random(), random_lobes(rng)
        if lesion.kind in ("split", "merge"):
            continue
        if lobulated < domain.lobulated_share:
            lesion.lobes = lobes
        if rim < domain.rim_share and 2 * max(lesion.radii) >= RIM_MIN_DIAMETER_MM:
            lesion.profile = "rim"
