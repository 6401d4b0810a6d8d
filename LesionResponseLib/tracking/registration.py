"""Register a follow-up PET/CT to another time point: rigid then deformable, multi-resolution, with checks.

Method ``"sitk-bspline"`` (default; SimpleITK):

1. **Images.** CT (HU, clipped to [-1000, 1500]) when both scans have one: anatomy that does not change
   with treatment response; else PET ``log(1 + SUV)`` (lesion changes may then bias the result: a note is
   recorded). Both are smoothed and resampled to ``rigid_spacing_mm`` and ``bspline_spacing_mm``
   isotropic grids. The metric (Mattes mutual information: robust to contrast, arm and bladder
   differences) is sampled inside the fixed body mask (CT > -400 HU, or SUV > 0.3).
2. **Rigid** (Euler, 2 levels). Started from the better of identity (scanner coordinates) and a body-centre
   alignment, so sessions with a different table origin still converge.
3. **Deformable** B-spline (control points every ``mesh_mm``), L-BFGS-B, 2 levels, on top of the rigid.
4. **Checks** (``RegistrationResult.quality``): NCC of the images inside the body before / after rigid /
   after deformable, Dice of the body masks after, fraction of folded voxels (Jacobian determinant <= 0),
   largest B-spline displacement. The B-spline is dropped (rigid kept, noted) when it folds or lowers the
   NCC; the registration is ``ok=False`` with a message when the body Dice after < ``min_body_dice`` or
   the NCC after < ``min_ncc``.

Methods by elastix (rigid then B-spline, the same parameter maps on every engine; see
:mod:`LesionResponseLib.tracking.elastix`): ``"elastix-slicer"`` (SlicerElastix's programs inside 3D
Slicer), ``"elastix-itk"`` (the itk-elastix package, in-process), ``"elastix-program"`` (``elastix`` on
PATH), and ``"elastix"``: the first of these available, in that order. ``"auto"`` is ``"elastix"`` when any
engine is available, else ``"sitk-bspline"``: elastix is 2.4-5.4x faster and more accurate on the phantom
(benchmarks/bench_registration.py). Other methods: ``"sitk-rigid"`` (stages 1-2) and ``"identity"``
(scanner coordinates, checks only). ``RegistrationResult.method`` records the method that ran (never
``auto``/``elastix``) and ``.software`` the engine and its version.

Convention (ITK): the returned transform maps physical points (LPS mm) of the fixed scan to the
corresponding points of the moving scan, so ``sitk.Resample(moving, fixed, transform)`` aligns moving.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.datamodel import RegistrationResult
from LesionResponseLib.errors import LesionResponseError, describe
from LesionResponseLib.tracking import elastix as elastix_engines

ELASTIX_METHODS = tuple(f"elastix-{name}" for name in elastix_engines.ENGINES)
METHODS = ("auto", "sitk-bspline", "sitk-rigid", "identity", "elastix", *ELASTIX_METHODS)


class RegistrationError(LesionResponseError):
    """Registration could not run (missing image, unknown method, external tool failure)."""


class TimePointImages(Protocol):
    """What registration needs from a loaded time point (``dicomio.LoadedTimePoint`` has it)."""

    info: Any  # has .index
    pet_suv: sitk.Image
    ct: sitk.Image | None


@dataclass
class RegistrationSettings:
    """Tunables of :func:`register_pair` (defaults measured in ``benchmarks/bench_registration.py``)."""

    rigid_spacing_mm: float = 6.0  # coarse grid of the rigid stage (repositioning is 10-30 mm)
    bspline_spacing_mm: float = 4.0  # grid of the deformable stage and the checks (PET voxel size)
    mesh_mm: float = 60.0  # B-spline control point spacing: organ shifts extend over 60-140 mm
    sampling: float = 0.02  # fraction of body voxels sampled by the metric (~20,000 at 4 mm)
    rigid_iterations: int = 200
    bspline_iterations: int = 60
    min_body_dice: float = 0.85  # below: gross failure (the bodies do not overlap)
    min_ncc: float = 0.5  # below: images not brought into correspondence
    max_fold_fraction: float = 0.001  # above: B-spline dropped, rigid kept
    # 2 (measured); fewer when the process was limited (a cohort worker's share: workflow/cohort.py)
    threads: int = field(default_factory=lambda: min(2, sitk.ProcessObject_GetGlobalDefaultNumberOfThreads()))
    seed: int = 1  # metric sampling seed: the same inputs give the same transform


# --------------------------------------------------------------------------------------------- images
def _as_timepoint(item: Any, index: int, is_pet: bool) -> Any:
    """Accept a time point object, or a bare image (CT unless ``is_pet``) for convenience."""
    if isinstance(item, sitk.Image):
        return SimpleNamespace(info=SimpleNamespace(index=index), pet_suv=item if is_pet else None,
                               ct=None if is_pet else item)
    return item


def _working_pair(fixed: Any, moving: Any) -> tuple[sitk.Image, sitk.Image, str]:
    """(fixed image, moving image, modality) used for registration: CT when both have one, else PET."""
    if fixed.ct is not None and moving.ct is not None:
        return _ct(fixed.ct), _ct(moving.ct), "ct"
    if fixed.pet_suv is None or moving.pet_suv is None:
        raise RegistrationError(describe(
            f"time points {fixed.info.index} and {moving.info.index} do not both have a CT or a PET",
            path="registration input", fix="Load both time points with dicomio.load_timepoint"))
    return _pet(fixed.pet_suv), _pet(moving.pet_suv), "pet"


def _ct(image: sitk.Image) -> sitk.Image:
    return sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, -1000.0, 1500.0)


def _pet(image: sitk.Image) -> sitk.Image:
    return sitk.Log(sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, 0.0, 1e4) + 1.0)


def _grid(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """An empty isotropic ``spacing_mm`` grid over ``image``'s extent."""
    size = [max(4, int(math.ceil(n * s / spacing_mm))) for n, s in zip(image.GetSize(), image.GetSpacing(),
                                                                       strict=True)]
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetOrigin(image.GetOrigin())
    grid.SetSpacing([spacing_mm] * 3)
    grid.SetDirection(image.GetDirection())
    return grid


def _resampled(image: sitk.Image, spacing_mm: float, background: float) -> sitk.Image:
    """``image`` smoothed (Gaussian FWHM ~ the new spacing) and resampled to an isotropic grid."""
    variance = [max(0.0, spacing_mm**2 - s**2) / 2.355**2 for s in image.GetSpacing()]
    smooth = sitk.DiscreteGaussian(image, variance, 16, 0.01, True) if max(variance) > 0 else image
    return sitk.Resample(smooth, _grid(image, spacing_mm), sitk.Transform(), sitk.sitkLinear, background,
                         sitk.sitkFloat32)


def _body(image: sitk.Image, modality: str) -> sitk.Image:
    """Body mask of a working image: CT > -400 HU or SUV > 0.3; largest component, holes filled."""
    threshold = -400.0 if modality == "ct" else math.log(1.3)
    mask = sitk.BinaryThreshold(image, threshold, 1e9, 1, 0)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True)
    return sitk.Cast(sitk.BinaryFillhole(components == 1), sitk.sitkUInt8)


def _background(modality: str) -> float:
    return -1000.0 if modality == "ct" else 0.0


# --------------------------------------------------------------------------------------------- quality
def _ncc(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, transform: sitk.Transform) -> float:
    """Normalised cross-correlation inside ``mask`` and the moving field of view after ``transform``."""
    warped = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, math.nan)
    f = sitk.GetArrayViewFromImage(fixed)
    m = sitk.GetArrayFromImage(warped)
    sel = (sitk.GetArrayViewFromImage(mask) > 0) & np.isfinite(m)
    if sel.sum() < 100:
        return 0.0
    a = f[sel] - f[sel].mean()
    b = m[sel] - m[sel].mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum() + 1e-12))


def _body_dice(fixed_body: sitk.Image, moving_body: sitk.Image, transform: sitk.Transform) -> float:
    """Dice of the body masks after ``transform``, counted inside the moving scan's field of view."""
    warped = sitk.GetArrayFromImage(sitk.Resample(moving_body, fixed_body, transform, sitk.sitkNearestNeighbor,
                                                  255))
    covered = warped != 255
    if not covered.any():
        return 0.0
    a, b = sitk.GetArrayViewFromImage(fixed_body)[covered] > 0, warped[covered] == 1
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def _fold_fraction(transform: sitk.Transform, mask: sitk.Image) -> tuple[float, float]:
    """(fraction of body voxels with Jacobian determinant <= 0, largest displacement in the body in mm)."""
    field = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, mask.GetSize(),
                                              mask.GetOrigin(), mask.GetSpacing(), mask.GetDirection())
    jac = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field))
    body = sitk.GetArrayViewFromImage(mask) > 0
    disp = np.linalg.norm(sitk.GetArrayFromImage(field), axis=-1)
    if not body.any():
        return 0.0, 0.0
    return float((jac[body] <= 0).mean()), float(disp[body].max())


# --------------------------------------------------------------------------------------------- stages
def _method(metric_mask: sitk.Image, settings: RegistrationSettings) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=48)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(settings.sampling, settings.seed)
    reg.SetMetricFixedMask(metric_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SetSmoothingSigmasAreSpecifiedInPhysicalUnits(False)
    return reg


def _rigid(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, moving_mask: sitk.Image,
           settings: RegistrationSettings) -> sitk.Euler3DTransform:
    """Rigid stage from the better (final metric) of identity and body-centre initialisation."""
    best: tuple[float, sitk.Euler3DTransform] | None = None
    for start in _rigid_starts(mask, moving_mask):
        reg = _method(mask, settings)
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=0.01,
                                                     numberOfIterations=settings.rigid_iterations,
                                                     relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetInitialTransform(start, inPlace=True)
        reg.Execute(fixed, moving)
        value = reg.GetMetricValue()
        if best is None or value < best[0]:
            best = (value, start)
    assert best is not None
    return best[1]


def _rigid_starts(mask: sitk.Image, moving_mask: sitk.Image) -> list[sitk.Euler3DTransform]:
    """Identity, plus a translation of body centres when they differ by more than 20 mm."""
    shape = sitk.LabelShapeStatisticsImageFilter()
    shape.Execute(mask)
    if not shape.HasLabel(1):
        return [sitk.Euler3DTransform()]
    fixed_centre = np.asarray(shape.GetCentroid(1))
    shape.Execute(moving_mask)
    shift = np.asarray(shape.GetCentroid(1)) - fixed_centre if shape.HasLabel(1) else np.zeros(3)
    identity = sitk.Euler3DTransform()
    identity.SetCenter(tuple(fixed_centre))
    starts = [identity]
    if np.linalg.norm(shift) > 20.0:
        moved = sitk.Euler3DTransform()
        moved.SetCenter(tuple(fixed_centre))
        moved.SetTranslation(tuple(shift))
        starts.append(moved)
    return starts


def _bspline(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, rigid: sitk.Transform,
             settings: RegistrationSettings) -> sitk.BSplineTransform:
    """B-spline stage on top of ``rigid`` (the moving initial transform).

    Transform-domain multi-resolution as elastix does: a mesh of ``2 * mesh_mm`` on the half-resolution
    image, refined to ``mesh_mm`` at full resolution; gradient descent with the step estimated from the
    physical shift of the control points (``SetOptimizerScalesFromPhysicalShift``).
    """
    mesh = [max(1, int(round(n * s / (2 * settings.mesh_mm)))) for n, s in zip(fixed.GetSize(),
                                                                               fixed.GetSpacing(), strict=True)]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    reg = _method(mask, settings)
    reg.SetOptimizerAsGradientDescent(learningRate=1.0, numberOfIterations=settings.bspline_iterations,
                                      convergenceMinimumValue=1e-6, convergenceWindowSize=10,
                                      estimateLearningRate=reg.Once, maximumStepSizeInPhysicalUnits=2.0)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetMovingInitialTransform(rigid)
    reg.SetInitialTransformAsBSpline(bspline, inPlace=True, scaleFactors=[1, 2])
    reg.Execute(fixed, moving)
    return bspline


# --------------------------------------------------------------------------------------------- public
def register_pair(
    fixed: TimePointImages | sitk.Image,
    moving: TimePointImages | sitk.Image,
    method: str = "sitk-bspline",
    settings: RegistrationSettings | None = None,
    *,
    transform_path: str = "",
    is_pet: bool = False,
    fixed_timepoint: int = 0,
    moving_timepoint: int = 1,
) -> tuple[sitk.Transform, RegistrationResult]:
    """Register ``moving`` onto ``fixed``; the transform maps fixed points (LPS mm) to moving points.

    ``fixed`` / ``moving``: time points with ``.pet_suv``, ``.ct`` (or None) and ``.info.index``; or bare
    images (CT in HU, or PET SUV with ``is_pet``; then ``fixed_timepoint`` / ``moving_timepoint`` name
    them). ``method``: one of :data:`METHODS` (module docstring). ``transform_path`` is only recorded
    (write the file with :func:`save_transform`). A poor result is returned with ``result.ok = False`` and
    the reason in ``result.message``; :class:`RegistrationError` when it cannot run at all.
    """
    settings = settings or RegistrationSettings()
    method, engine = resolve_method(method)
    fixed, moving = _as_timepoint(fixed, fixed_timepoint, is_pet), _as_timepoint(moving, moving_timepoint, is_pet)
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(settings.threads)
    start = time.perf_counter()
    f_img, m_img, modality = _working_pair(fixed, moving)
    bg = _background(modality)
    f_fine, m_fine = (_resampled(x, settings.bspline_spacing_mm, bg) for x in (f_img, m_img))
    f_body, m_body = _body(f_fine, modality), _body(m_fine, modality)
    quality = {"ncc_before": _ncc(f_fine, m_fine, f_body, sitk.Transform(3, sitk.sitkIdentity))}
    notes = [] if modality == "ct" else ["registered on PET (no CT): lesion changes may bias it"]
    try:
        transform = _run_method(method, engine, f_img, m_img=m_img, f_fine=f_fine, m_fine=m_fine,
                                f_body=f_body, modality=modality, settings=settings, quality=quality,
                                notes=notes)
        crashed = False
    except RuntimeError as error:  # ITK optimiser/metric failure (e.g. no overlap at all): report, do not raise
        transform, crashed = sitk.Transform(3, sitk.sitkIdentity), True
        notes.insert(0, f"{method} failed ({str(error).strip().splitlines()[-1][:160]}); identity returned")
    quality["ncc_after"] = _ncc(f_fine, m_fine, f_body, transform)
    quality["body_dice_after"] = _body_dice(f_body, m_body, transform)
    ok, message = _verdict(quality, settings, notes)
    if crashed and ok:
        ok, message = False, "; ".join(notes)
    result = RegistrationResult(fixed_timepoint=int(fixed.info.index), moving_timepoint=int(moving.info.index),
                                transform_path=transform_path, method=method, ok=ok,
                                software=engine.software if engine else f"SimpleITK {sitk.Version.VersionString()}",
                                quality={k: round(v, 4) for k, v in quality.items()}, message=message,
                                seconds=round(time.perf_counter() - start, 2))
    return transform, result


def resolve_method(method: str) -> tuple[str, elastix_engines.ElastixEngine | None]:
    """(the concrete method that will run, its elastix engine or None) for a requested ``method``.

    ``auto``: the first available elastix engine, else ``sitk-bspline``. ``elastix``: the first available
    engine (:class:`RegistrationError` when there is none). ``elastix-<engine>``: that engine, or
    :class:`RegistrationError` saying how to install it.
    """
    if method not in METHODS:
        raise RegistrationError(describe(f"unknown registration method {method!r}", path="registration.method",
                                         fix=f"Use one of {', '.join(METHODS)}"))
    if method in ("auto", "elastix"):
        engines = elastix_engines.available_engines()
        if engines:
            return f"elastix-{engines[0].name}", engines[0]
        if method == "auto":
            return "sitk-bspline", None
        hints = "; ".join(elastix_engines.install_hint(name) for name in elastix_engines.ENGINES)
        raise RegistrationError(describe("no elastix is available here", path="registration.method=elastix",
                                         fix=f"Any of: {hints}. Or use method sitk-bspline"))
    if method in ELASTIX_METHODS:
        name = method.removeprefix("elastix-")
        engine = elastix_engines.find_engine(name)
        if engine is None:
            raise RegistrationError(describe(f"elastix engine {name!r} is not available here",
                                             path=f"registration.method={method}",
                                             fix=f"To get it: {elastix_engines.install_hint(name)}. Or use method auto"))
        return method, engine
    return method, None


def _run_method(method: str, engine: elastix_engines.ElastixEngine | None, f_img: sitk.Image, *,
                m_img: sitk.Image,
                f_fine: sitk.Image, m_fine: sitk.Image, f_body: sitk.Image, modality: str,
                settings: RegistrationSettings, quality: dict[str, float], notes: list[str]) -> sitk.Transform:
    if method == "identity":
        return sitk.Transform(3, sitk.sitkIdentity)
    if engine is not None:
        maps = elastix_engines.parameter_maps(_background(modality), settings.mesh_mm)
        try:
            return elastix_engines.run_elastix(engine, f_fine, m_fine, mask=f_body, maps=maps,
                                               threads=settings.threads)
        except elastix_engines.ElastixError as error:  # a program failed: the caller's RegistrationError
            raise RegistrationError(str(error)) from error
    bg = _background(modality)
    f_coarse, m_coarse = (_resampled(x, settings.rigid_spacing_mm, bg) for x in (f_img, m_img))
    rigid = _rigid(f_coarse, m_coarse, _body(f_coarse, modality), _body(m_coarse, modality), settings)
    quality["ncc_rigid"] = _ncc(f_fine, m_fine, f_body, rigid)
    if method == "sitk-rigid":
        return rigid
    return _deformable_or_rigid(f_fine, m_fine, f_body, rigid=rigid, settings=settings, quality=quality,
                                notes=notes)


def _deformable_or_rigid(f_fine: sitk.Image, m_fine: sitk.Image, f_body: sitk.Image, *, rigid: sitk.Transform,
                         settings: RegistrationSettings, quality: dict[str, float],
                         notes: list[str]) -> sitk.Transform:
    """Rigid followed by the B-spline, unless the B-spline folds or does not improve the NCC."""
    bspline = _bspline(f_fine, m_fine, f_body, rigid, settings)
    composite = sitk.CompositeTransform([rigid, bspline])  # ITK applies the B-spline first, then the rigid
    coarse_body = sitk.Resample(f_body, _grid(f_body, 8.0), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    folds, largest = _fold_fraction(bspline, coarse_body)
    quality["fold_fraction"] = folds
    quality["bspline_max_displacement_mm"] = largest
    quality["ncc_bspline"] = _ncc(f_fine, m_fine, f_body, composite)
    if folds > settings.max_fold_fraction or quality["ncc_bspline"] < quality["ncc_rigid"]:
        notes.append(f"deformable stage dropped (fold fraction {folds:.4f}, NCC {quality['ncc_bspline']:.3f} "
                     f"vs rigid {quality['ncc_rigid']:.3f}); rigid result kept")
        return rigid
    return composite


def _verdict(quality: dict[str, float], settings: RegistrationSettings, notes: list[str]) -> tuple[bool, str]:
    problems = []
    if quality["body_dice_after"] < settings.min_body_dice:
        problems.append(f"body masks overlap poorly after registration (Dice {quality['body_dice_after']:.3f} "
                        f"< {settings.min_body_dice})")
    if quality["ncc_after"] < settings.min_ncc:
        problems.append(f"images correlate poorly after registration (NCC {quality['ncc_after']:.3f} "
                        f"< {settings.min_ncc})")
    if problems:
        return False, "; ".join(problems + notes) + (". Check that both scans are the same patient and body "
                                                     "region, or align them manually in Slicer")
    return True, "; ".join(notes)


# --------------------------------------------------------------------------------------------- files
def transform_filename(fixed_timepoint: int, moving_timepoint: int, transform: sitk.Transform) -> str:
    """``transforms/tp{i}_to_tp{j}.tfm``, or ``.h5`` (binary) when the transform holds a displacement field."""
    text = transform.GetName() + " ".join(
        sitk.CompositeTransform(transform).GetNthTransform(n).GetName()
        for n in range(sitk.CompositeTransform(transform).GetNumberOfTransforms()))
    ext = ".h5" if "DisplacementField" in text else ".tfm"
    return f"transforms/tp{fixed_timepoint}_to_tp{moving_timepoint}{ext}"


def save_transform(transform: sitk.Transform, path: str | Path) -> Path:
    """Write ``transform`` as an ITK transform file (``.tfm``/``.txt``; ``.h5`` suits displacement fields)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteTransform(transform, str(path))
    return path


def load_transform(path: str | Path) -> sitk.Transform:
    """Read an ITK transform file written by :func:`save_transform` (or exported by Slicer)."""
    path = Path(path)
    if not path.exists():
        raise RegistrationError(describe("transform file not found", path=path,
                                         fix="Re-run the registration (lesion-response register)"))
    try:
        return sitk.ReadTransform(str(path))
    except RuntimeError as error:
        raise RegistrationError(describe(f"not a readable ITK transform ({str(error).splitlines()[0]})",
                                         path=path, fix="Re-run the registration")) from error
