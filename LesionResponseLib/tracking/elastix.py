"""elastix wherever the tool runs: one parameter set, three engines, found lazily.

Engines, in the order ``auto`` (and ``elastix``) tries them (:data:`ENGINES`):

1. ``slicer``: the ``elastix`` / ``transformix`` programs of the SlicerElastix extension inside 3D Slicer,
   found as that extension exposes them: ``Elastix.ElastixLogic().getElastixBinDir()`` and
   ``getElastixEnv()`` (its install-tree lookup plus the user's custom folder setting). Looked up only
   when ``slicer`` is already imported (we are inside Slicer) and has ``slicer.modules.elastix``: this
   module never imports ``slicer`` (outside Slicer it may be the slicer-core wheel, which has no extensions)
   nor Qt. Slicer's analysis runs in a background ``PythonSlicer`` process, which has no loaded modules:
   the Slicer module hands the folder over in the environment variable :data:`SLICER_ELASTIX_DIR_ENV`
   (:func:`slicer_handoff_environment`). First because inside Slicer it is the elastix the user installed
   for Slicer, and it runs out of process (no second ITK loaded next to Slicer's own).
2. ``program``: ``elastix`` / ``transformix`` on PATH (e.g. the Debian package ``elastix``).
3. ``itk``: the ``itk-elastix`` package (``itk.ElastixRegistrationMethod``), in-process. Its result is turned
   into plain ITK transforms (``ConvertToItkTransform``: Euler then B-spline, exact). A dependency of the
   project, so ``pip install`` brings elastix on every platform it has wheels for (docs/methods/registration.md).

Every engine runs the same parameter maps (:func:`parameter_maps`) on the same images, mask, seed and
thread count, so their results agree (measured in ``benchmarks/bench_registration.py``). ``program``
comes before ``itk`` where both exist: a pair costs the same CPU on both within the noise (25.8 vs 27.0
and 27.6 vs 25.6 s in two phantom runs), but the first itk-elastix registration of a process also loads
ITK's Python wrapping (14-16 CPU-s and ~1 GB of memory, measured; docs/evaluation.md "Registration").
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.errors import LesionResponseError, describe

ENGINES = ("slicer", "program", "itk")  # the order auto tries them (module docstring)
SLICER_ELASTIX_DIR_ENV = "LESION_RESPONSE_SLICER_ELASTIX_DIR"
FIELD_SPACING_MM = 8.0  # grid of the displacement field transforms made from transformix's output
_EXE = ".exe" if os.name == "nt" else ""


class ElastixError(LesionResponseError):
    """An elastix engine was asked for but is not available, or it failed."""


@dataclass(frozen=True)
class ElastixEngine:
    """One way to run elastix: ``name`` in :data:`ENGINES`, its ``version``, and for programs their folder."""

    name: str
    version: str
    bin_dir: str = ""  # folder of elastix + transformix (slicer, program); "" for itk
    env: dict[str, str] = field(default_factory=dict, compare=False)  # extra environment of the programs

    @property
    def software(self) -> str:
        """Provenance text, e.g. ``"elastix 5.0.1 (program /usr/bin)"`` or ``"itk-elastix 0.25.4 (itk)"``."""
        return f"{self.version} ({self.name}{' ' + self.bin_dir if self.bin_dir else ''})"


# --------------------------------------------------------------------------------------------- parameters
_COMMON = """(Registration "MultiResolutionRegistration")
(Metric "AdvancedMattesMutualInformation")
(NumberOfHistogramBins 48)
(Optimizer "AdaptiveStochasticGradientDescent")
(ImageSampler "RandomCoordinate")
(NewSamplesEveryIteration "true")
(FixedImagePyramid "FixedSmoothingImagePyramid")
(MovingImagePyramid "MovingSmoothingImagePyramid")
(Interpolator "LinearInterpolator")
(ResampleInterpolator "FinalBSplineInterpolator")
(FinalBSplineInterpolationOrder 1)
(Resampler "DefaultResampler")
(FixedInternalImagePixelType "float")
(MovingInternalImagePixelType "float")
(ErodeMask "false")
(WriteResultImage "false")
(HowToCombineTransforms "Compose")
(RandomSeed 1)
(DefaultPixelValue {background})
"""
_RIGID = _COMMON + """(Transform "EulerTransform")
(AutomaticTransformInitialization "true")
(AutomaticScalesEstimation "true")
(NumberOfResolutions 3)
(MaximumNumberOfIterations 250)
(NumberOfSpatialSamples 4000)
"""
_BSPLINE = _COMMON + """(Transform "BSplineTransform")
(FinalGridSpacingInPhysicalUnits {mesh})
(NumberOfResolutions 2)
(MaximumNumberOfIterations 300)
(NumberOfSpatialSamples 6000)
"""


def parameter_maps(background: float, mesh_mm: float) -> list[str]:
    """The elastix parameter files (text) every engine runs: rigid (Euler), then B-spline on top of it.

    Mattes MI (48 bins) with adaptive stochastic gradient descent on 4,000 / 6,000 random samples per
    iteration inside the fixed mask (Klein et al., IEEE TMI 2010;29:196-205); rigid over 3 resolutions
    (repositioning of 10-30 mm), B-spline with ``mesh_mm`` control-point spacing over 2 (organ shifts
    extend over 60-140 mm). ``background``: value outside the moving scan (-1000 HU on CT, 0 on PET).
    """
    return [_RIGID.format(background=background), _BSPLINE.format(background=background, mesh=mesh_mm)]


# --------------------------------------------------------------------------------------------- discovery
def find_engine(name: str) -> ElastixEngine | None:
    """The engine ``name`` (one of :data:`ENGINES`) when it is available here, else None."""
    if name not in ENGINES:
        raise ElastixError(describe(f"unknown elastix engine {name!r}", path="elastix engine",
                                    fix=f"Use one of {', '.join(ENGINES)}"))
    return {"slicer": _slicer_engine, "itk": _itk_engine, "program": _program_engine}[name]()


def available_engines() -> list[ElastixEngine]:
    """Every elastix engine available here, in :data:`ENGINES` order (the first is what ``auto`` runs)."""
    return [engine for engine in map(find_engine, ENGINES) if engine is not None]


def install_hint(name: str) -> str:
    """How to make the engine ``name`` available."""
    return {"slicer": "inside 3D Slicer, install the SlicerElastix extension (Extensions Manager)",
            "program": "install the elastix program and put it on PATH (Debian/Ubuntu: apt-get install elastix)",
            "itk": "pip install itk-elastix (a dependency of lesion-response where it has wheels)",
            }[name]


def _slicer_engine() -> ElastixEngine | None:
    folder, env = _slicer_elastix_dir()
    return _program_at("slicer", folder, env) if folder else None


def _slicer_elastix_dir() -> tuple[str, dict[str, str]]:
    """(SlicerElastix's binary folder, its extra environment); ("", {}) when not inside Slicer with it."""
    handed_over = os.environ.get(SLICER_ELASTIX_DIR_ENV, "")
    if handed_over:
        return handed_over, _library_path_env(handed_over)
    slicer = sys.modules.get("slicer")  # never imported here: present only inside Slicer's interpreter
    module = getattr(getattr(slicer, "modules", None), "elastix", None)
    if module is None:
        return "", {}
    try:
        logic = _elastix_logic_class(module)()
        folder = str(logic.getElastixBinDir())
        full_env = dict(logic.getElastixEnv())
    except Exception:  # noqa: BLE001 - SlicerElastix raises ValueError('Elastix not found') and may change
        return "", {}
    extra = {k: v for k, v in full_env.items() if k in ("PATH", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH")}
    return folder, extra


def _elastix_logic_class(module: object) -> type:
    """``Elastix.ElastixLogic``, importing the extension's script folder when Slicer has not put it on the path."""
    try:
        import Elastix  # type: ignore[import-not-found]  # the SlicerElastix module script
    except ImportError:
        sys.path.append(os.path.dirname(str(module.path)))  # type: ignore[attr-defined]
        import Elastix  # type: ignore[import-not-found]
    return Elastix.ElastixLogic


def _library_path_env(folder: str) -> dict[str, str]:
    """What SlicerElastix's ``getElastixEnv`` adds on Linux/macOS: its ``../lib`` on the library path."""
    if os.name == "nt":
        return {}
    lib = os.path.abspath(os.path.join(folder, "..", "lib"))
    current = os.environ.get("LD_LIBRARY_PATH", "")
    return {"LD_LIBRARY_PATH": lib + (os.pathsep + current if current else "")}


def slicer_handoff_environment() -> dict[str, str]:
    """Environment for a background process started from Slicer, so it finds SlicerElastix's programs.

    Call it in Slicer's own interpreter (the Slicer module does, before starting the analysis process).
    """
    folder, _ = _slicer_elastix_dir()
    return {SLICER_ELASTIX_DIR_ENV: folder} if folder else {}


def _itk_engine() -> ElastixEngine | None:
    """itk-elastix when installed (metadata only: importing itk takes seconds, it happens at first use)."""
    try:
        version = importlib.metadata.version("itk-elastix")
    except importlib.metadata.PackageNotFoundError:
        return None
    return ElastixEngine("itk", f"itk-elastix {version}")


def _program_engine() -> ElastixEngine | None:
    elastix = shutil.which("elastix")
    return _program_at("program", os.path.dirname(elastix), {}) if elastix else None


def _program_at(name: str, folder: str, env: dict[str, str]) -> ElastixEngine | None:
    """The engine of the elastix + transformix programs in ``folder``, or None when either is missing."""
    programs = [Path(folder) / f"{p}{_EXE}" for p in ("elastix", "transformix")]
    if not all(p.is_file() and os.access(p, os.X_OK) for p in programs):
        return None
    return ElastixEngine(name, _program_version(str(programs[0]), tuple(sorted(env.items()))),
                         str(Path(folder).resolve()), env)


@functools.lru_cache(maxsize=8)
def _program_version(elastix: str, env: tuple[tuple[str, str], ...]) -> str:
    """``"elastix 5.0.1"`` from ``elastix --version`` (``"elastix (version unknown)"`` if it does not say)."""
    try:
        done = subprocess.run([elastix, "--version"], capture_output=True, text=True, timeout=30, check=False,
                              env={**os.environ, **dict(env)})
        words = (done.stdout + done.stderr).split()
    except (OSError, subprocess.SubprocessError):
        words = []
    numbers = [w for w in words if w[:1].isdigit() and "." in w]
    return f"elastix {numbers[0]}" if numbers else "elastix (version unknown)"


# --------------------------------------------------------------------------------------------- running
def run_elastix(engine: ElastixEngine, fixed: sitk.Image, moving: sitk.Image, *, mask: sitk.Image,
                maps: list[str], threads: int) -> sitk.Transform:
    """Register ``moving`` onto ``fixed`` (metric sampled in ``mask``) with ``maps`` on ``engine``.

    Returns the fixed -> moving transform (ITK convention): a displacement field transform on a
    :data:`FIELD_SPACING_MM` grid from the programs (transformix), a composite of plain ITK transforms from
    itk-elastix. Both load in SimpleITK and Slicer once written with ``registration.save_transform``.
    """
    if engine.name == "itk":
        return _run_itk(fixed, moving, mask, maps, threads)
    return _run_programs(engine, fixed, moving, mask=mask, maps=maps, threads=threads)


def _run_programs(engine: ElastixEngine, fixed: sitk.Image, moving: sitk.Image, *, mask: sitk.Image,
                  maps: list[str], threads: int) -> sitk.Transform:
    elastix, transformix = (str(Path(engine.bin_dir) / f"{p}{_EXE}") for p in ("elastix", "transformix"))
    env = {**os.environ, **engine.env}
    with tempfile.TemporaryDirectory(prefix="lr-elastix-") as tmp:
        work = Path(tmp)
        for name, image in (("fixed", fixed), ("moving", moving), ("mask", mask)):
            sitk.WriteImage(image, str(work / f"{name}.mha"))
        files = []
        for n, text in enumerate(maps):
            files += ["-p", work / f"map{n}.txt"]
            (work / f"map{n}.txt").write_text(text)
        _run([elastix, "-f", work / "fixed.mha", "-m", work / "moving.mha", "-fMask", work / "mask.mha", *files,
              "-out", work, "-threads", str(threads)], work, env)
        _run([transformix, "-def", "all", "-tp", work / f"TransformParameters.{len(maps) - 1}.txt", "-out", work,
              "-threads", str(threads)], work, env)
        field = sitk.ReadImage(str(next(work.glob("deformationField.mh[ad]"))), sitk.sitkVectorFloat64)
    # the B-spline is smooth on mesh_mm scales: a FIELD_SPACING_MM field interpolated linearly differs from
    # it by < 0.1 mm and keeps transform files small
    coarse = sitk.Image([max(4, int(np.ceil(n * s / FIELD_SPACING_MM))) for n, s in
                         zip(field.GetSize(), field.GetSpacing(), strict=True)], sitk.sitkUInt8)
    coarse.SetOrigin(field.GetOrigin())
    coarse.SetSpacing([FIELD_SPACING_MM] * 3)
    coarse.SetDirection(field.GetDirection())
    field = sitk.Resample(field, coarse, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64)
    return sitk.DisplacementFieldTransform(field)


def _run(command: list, work: Path, env: dict[str, str]) -> None:
    done = subprocess.run([str(c) for c in command], cwd=work, capture_output=True, text=True, check=False,
                          env=env)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise ElastixError(describe(f"{Path(str(command[0])).name} failed: {' | '.join(tail)}",
                                    path=str(command[0]), fix="Check the images, or use method sitk-bspline"))


def _run_itk(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, maps: list[str],
             threads: int) -> sitk.Transform:
    """itk-elastix in-process; the combined transform converted to ITK transforms and read by SimpleITK."""
    with warnings.catch_warnings():  # ITK's SWIG modules load lazily here, each with DeprecationWarnings
        warnings.simplefilter("ignore", DeprecationWarning)
        return _run_itk_quietly(fixed, moving, mask, maps, threads)


def _run_itk_quietly(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, maps: list[str],
                     threads: int) -> sitk.Transform:
    import itk  # heavy (seconds, ~1 GB): only here

    parameters = itk.ParameterObject.New()
    with tempfile.TemporaryDirectory(prefix="lr-itk-elastix-") as tmp:
        for n, text in enumerate(maps):  # the very files the programs read, parsed by elastix itself
            path = Path(tmp) / f"map{n}.txt"
            path.write_text(text)
            parameters.AddParameterFile(str(path))
        f_itk, m_itk = _to_itk(fixed, np.float32), _to_itk(moving, np.float32)
        method = itk.ElastixRegistrationMethod[type(f_itk), type(m_itk)].New(f_itk, m_itk)
        method.SetParameterObject(parameters)
        method.SetFixedMask(_to_itk(mask, np.uint8))
        method.SetNumberOfThreads(int(threads))
        method.SetLogToConsole(False)
        method.Update()
        transform = method.ConvertToItkTransform(method.GetCombinationTransform())
        path = Path(tmp) / "transform.h5"
        itk.transformwrite([transform], str(path))
        return sitk.ReadTransform(str(path))


def _to_itk(image: sitk.Image, dtype: type) -> object:
    """A SimpleITK image as an ITK Python image of numpy ``dtype`` (same grid: origin, spacing, direction)."""
    import itk

    out = itk.image_from_array(np.ascontiguousarray(sitk.GetArrayFromImage(image).astype(dtype)))
    out.SetOrigin(image.GetOrigin())
    out.SetSpacing(image.GetSpacing())
    out.SetDirection(itk.matrix_from_array(np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)))
    return out
