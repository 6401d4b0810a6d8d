"""The segmentation model: config, network, preprocessing, versioned file format and loaders.

Network: MONAI ``SegResNet`` (init_filters=8, ~1.2 M parameters, 4.7 MB). Chosen over DynUNet because it
is compact, residual, uses GroupNorm (stable at batch size 2) and runs a whole-body PET on 2 CPU cores in
seconds. Input channels (``ModelConfig.channels``): ``pet_suv`` alone (v1-v4, v6-v9), or ``pet_suv`` + ``ct_hu``.
PET normalisation: ``log1p(SUV)`` - SUV is already a physical, vendor-neutral scale; log1p compresses the heavy
tail (lesions SUV 8-80) without per-image z-scoring, which would let one hot bladder rescale the whole image.
CT (``ct_channel``): the same time point's CT (same frame of reference, so identity resampling) on the model
grid, clipped to a soft-tissue window and scaled to [-1, 1] (HU is a physical scale too; see ``ct_window_hu``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.errors import LesionResponseError, describe
from LesionResponseLib.imaging import hu_on_grid

MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models"
DEFAULT_MODEL_PATH = MODELS_DIR / "lesion_segresnet_v9.pt"
FILE_FORMAT = "lesion-response-segmentation-model"


class SegmentationError(LesionResponseError):
    """A model file, bundle or segmentation input that cannot be used."""


@dataclass
class ModelConfig:
    """How a model expects its input and how its output is read."""

    version: str = "1.0.0"
    architecture: str = "SegResNet"
    init_filters: int = 8
    channels: tuple[str, ...] = ("pet_suv",)  # input channels, in order: "pet_suv" [, "ct_hu"]
    # CT channel: HU clipped to this window, scaled linearly to [-1, 1]. Default = the radiological abdominal
    # soft-tissue window (level 40, width 400 HU): fat (-100), unenhanced organs and nodes (20-60 HU) and
    # marrow (250) keep their contrast; lung/air and cortical bone saturate, which are never what tells an
    # adrenal or pancreas from a node. HU is calibrated on every CT (water 0, air -1000), so no per-image scaling.
    ct_window_hu: tuple[float, float] = (-160.0, 240.0)
    # A CT-channel model given no CT: "error" (refuse), or "zeros" (feed the channel's missing-CT value 0, which
    # the model saw during training with CT dropout - ``trained_on["ct_dropout"]`` - so it falls back to PET).
    missing_ct: str = "error"
    spacing_mm: tuple[float, float, float] = (4.0, 4.0, 4.0)  # isotropic 4 mm = typical PET voxel
    normalisation: str = "log1p_suv"  # log1p_suv | none
    patch_size: tuple[int, int, int] = (64, 64, 64)  # voxels; 256 mm sees a whole spleen or kidney
    activation: str = "sigmoid"  # sigmoid (one output channel per ``outputs`` entry) | softmax (lesion = channel 1)
    # Output maps, in channel order: "lesion" [, "physiological"]. "physiological" (sigmoid models only): the
    # organs whose physiological [68Ga]DOTATATE uptake mimics a lesion (``PHYSIOLOGICAL_OUTPUT_ORGANS``), learnt
    # beside the lesions; model ROIs lying on it are dropped (``components.drop_physiological_rois``) and the
    # longitudinal search does not go there (``prior_guided.physiological_share``).
    outputs: tuple[str, ...] = ("lesion",)
    threshold: float = 0.5  # probability above which a voxel is lesion
    # Models with a "physiological" output: probability at or above which a voxel is physiological uptake,
    # calibrated on validation scans (``training.calibrate_physiological_threshold``); 0.5 where never calibrated.
    physiological_threshold: float = 0.5
    trained_on: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        names = cls.__dataclass_fields__
        clean = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
        return cls(**clean)


#: Organs of the ``physiological`` output: focal physiological uptake that mimics a lesion next to or in place of
#: one (spleen and accessory spleens, kidneys, adrenals, pituitary, the pancreas' uncinate process, bladder,
#: thyroid; Hofman et al., RadioGraphics 2015;35:500-516). Left out: the liver, whose uniform uptake is the
#: background liver lesions stand out of (a search find in it is judged against that background), and the
#: bowel, along which mesenteric nodes and small-bowel primaries lie.
PHYSIOLOGICAL_OUTPUT_ORGANS = ("spleen", "kidney", "adrenal", "pituitary", "uncinate", "bladder", "thyroid")
OUTPUT_NAMES = ("lesion", "physiological")


def build_network(config: ModelConfig):
    """The untrained MONAI network for ``config``."""
    from monai.networks.nets import SegResNet

    if config.outputs[:1] != ("lesion",) or not set(config.outputs) <= set(OUTPUT_NAMES) or \
            (config.activation != "sigmoid" and config.outputs != ("lesion",)):
        raise SegmentationError(f"model outputs {config.outputs}: expected 'lesion' first, then optionally "
                                f"'physiological' (sigmoid models only)")
    out_channels = len(config.outputs) if config.activation == "sigmoid" else 2
    return SegResNet(spatial_dims=3, in_channels=len(config.channels), out_channels=out_channels,
                     init_filters=config.init_filters, blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1))


def normalise(suv: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Network input from an SUV array (float32)."""
    if config.normalisation == "log1p_suv":
        return np.log1p(np.clip(suv, 0.0, None)).astype(np.float32)
    return suv.astype(np.float32)


def uses_ct(config: ModelConfig) -> bool:
    """Whether the model has a CT input channel."""
    return "ct_hu" in config.channels


def ct_channel(ct: sitk.Image | None, grid: sitk.Image, config: ModelConfig) -> np.ndarray:
    """CT input channel on ``grid`` (the model-grid PET): HU in ``config.ct_window_hu`` scaled to [-1, 1].

    The CT is brought onto the grid by :func:`LesionResponseLib.imaging.hu_on_grid` (identity transform,
    block-averaged then linear; air outside its field of view). ``ct`` None gives the missing-CT value 0 everywhere.
    """
    if ct is None:
        return np.zeros(sitk.GetArrayViewFromImage(grid).shape, np.float32)
    hu = hu_on_grid(ct, grid)
    low, high = config.ct_window_hu
    return (2.0 * (np.clip(hu, low, high) - low) / (high - low) - 1.0).astype(np.float32)


def resample_to_spacing(image: sitk.Image, spacing_mm, interpolator=sitk.sitkLinear) -> sitk.Image:
    """``image`` resampled to ``spacing_mm`` over the same physical extent, origin and direction."""
    size = [max(1, int(round(n * s / t))) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing_mm,
                                                             strict=True)]
    return sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(),
                         tuple(float(s) for s in spacing_mm), image.GetDirection(), 0.0, image.GetPixelID())


@dataclass
class SegmentationModel:
    """A loaded network (torch module, eval mode) with its :class:`ModelConfig` and source path."""

    network: Any
    config: ModelConfig
    path: Path | None = None

    def probability(self, pet_suv: sitk.Image, progress: bool = False, device: str | None = None,
                    ct: sitk.Image | None = None) -> sitk.Image:
        """Lesion probability (0-1, float32) on the model's grid (``config.spacing_mm``).

        ``ct``: the time point's CT (HU), used by models with a ``ct_hu`` channel (see ``ct_channel``);
        such a model given none raises :class:`SegmentationError` unless its ``missing_ct`` is ``"zeros"``.
        """
        return self.probabilities(pet_suv, progress, device, ct)["lesion"]

    def probabilities(self, pet_suv: sitk.Image, progress: bool = False, device: str | None = None,
                      ct: sitk.Image | None = None) -> dict[str, sitk.Image]:
        """Every output map of one inference (``config.outputs``: ``"lesion"`` and, if the model has it,
        ``"physiological"``), each a probability 0-1 (float32) on the model's grid; arguments as
        :meth:`probability`."""
        import torch
        from monai.inferers import sliding_window_inference

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch.set_num_threads(min(2, torch.get_num_threads()))
        image = resample_to_spacing(sitk.Cast(pet_suv, sitk.sitkFloat32), self.config.spacing_mm)
        suv = sitk.GetArrayFromImage(image)  # z, y, x
        box = _body_box(suv)
        channels = [normalise(suv[box], self.config)]
        if uses_ct(self.config):
            self._check_ct(ct)
            channels.append(ct_channel(ct, image, self.config)[box])
        tensor = torch.from_numpy(np.stack(channels))[None].to(device)
        network = self.network.to(device).eval()
        with torch.inference_mode():
            logits = sliding_window_inference(tensor, self.config.patch_size, sw_batch_size=2, predictor=network,
                                              overlap=0.25, mode="gaussian", progress=progress).float()
        prob = torch.sigmoid(logits[:, :len(self.config.outputs)]) if self.config.activation == "sigmoid" else \
            torch.softmax(logits, 1)[:, 1:2]
        maps = {}
        for channel, name in enumerate(self.config.outputs):
            full = np.zeros(suv.shape, np.float32)
            full[box] = prob[0, channel].cpu().numpy()
            maps[name] = sitk.GetImageFromArray(full)
            maps[name].CopyInformation(image)
        return maps

    def _check_ct(self, ct: sitk.Image | None) -> None:
        if ct is None and self.config.missing_ct != "zeros":
            raise SegmentationError(describe(
                "this model has a CT input channel but the time point has no CT", path=self.path,
                fix="Provide the PET/CT study's CT series, or segment with a PET-only model (--method PATH)."))
        if ct is not None and ct.GetDimension() != 3:
            raise SegmentationError(describe(f"CT image has {ct.GetDimension()} dimensions, not 3",
                                             fix="Pass the time point's 3D CT volume (HU)."))


def _body_box(suv: np.ndarray, body_suv: float = 0.1, margin: int = 4) -> tuple[slice, ...]:
    """Bounding box (slices) of voxels above ``body_suv`` (air is ~0 SUV, soft tissue > 0.3) plus ``margin``."""
    inside = np.argwhere(suv > body_suv)
    if inside.size == 0:
        return tuple(slice(0, n) for n in suv.shape)
    lo, hi = np.maximum(inside.min(0) - margin, 0), np.minimum(inside.max(0) + margin + 1, suv.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def save_model(network, config: ModelConfig, path: str | Path) -> Path:
    """Write ``{format, config, state_dict}`` to one versioned ``.pt`` file (and a readable ``.json``)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    torch.save({"format": FILE_FORMAT, "config": asdict(config), "state_dict": state}, path)
    path.with_suffix(".json").write_text(json.dumps(asdict(config), indent=2))
    return path


def load_model(path: str | Path | None = None) -> SegmentationModel:
    """Load a model: the shipped default, a project ``.pt``, a TorchScript file or a MONAI bundle folder.

    TorchScript files and bundles read their :class:`ModelConfig` from a sidecar ``<file>.json`` or
    ``configs/lesion_response.json``; without one, the shipped model's defaults apply (4 mm, log1p SUV,
    1 channel, sigmoid, 0.5). nnU-Net v2 result folders are not supported (nnunetv2 is not a dependency).
    """
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    if not path.exists():
        raise SegmentationError(describe("model file or folder not found", path=path,
                                         fix="Pass an existing .pt/.ts file or MONAI bundle folder, or run "
                                             "`lesion-response train` to create the default model."))
    if path.is_dir():
        return _load_bundle(path)
    return _load_file(path)


def _sidecar_config(json_path: Path) -> ModelConfig:
    return ModelConfig.from_dict(json.loads(json_path.read_text())) if json_path.exists() else ModelConfig()


def _load_file(path: Path) -> SegmentationModel:
    import torch

    try:
        with warnings.catch_warnings():  # torch.load warns before handing TorchScript archives to jit.load
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a plain checkpoint: try TorchScript below
        payload = None
    if isinstance(payload, dict) and payload.get("format") == FILE_FORMAT:
        config = ModelConfig.from_dict(payload["config"])
        network = build_network(config)
        network.load_state_dict(payload["state_dict"])
        return SegmentationModel(network.eval(), config, path)
    try:
        network = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        raise SegmentationError(describe(f"neither a LesionResponse model nor TorchScript ({error})", path=path,
                                         fix="Export your network with torch.jit.save, or save it with "
                                             "LesionResponseLib.segmentation.save_model.")) from error
    return SegmentationModel(network.eval(), _sidecar_config(path.with_suffix(".json")), path)


def _load_bundle(folder: Path) -> SegmentationModel:
    """A MONAI bundle: ``models/model.ts`` (TorchScript) or ``configs/inference.json`` + ``models/model.pt``."""
    import torch

    config = _sidecar_config(folder / "configs" / "lesion_response.json")
    if (folder / "models" / "model.ts").exists():
        return SegmentationModel(torch.jit.load(str(folder / "models" / "model.ts"), map_location="cpu").eval(),
                                 config, folder)
    settings, weights = folder / "configs" / "inference.json", folder / "models" / "model.pt"
    if not (settings.exists() and weights.exists()):
        if (folder / "plans.json").exists() or any(folder.glob("fold_*")):
            problem = "looks like an nnU-Net v2 results folder, which is not supported here"
        else:
            problem = "not a MONAI bundle (no models/model.ts, nor configs/inference.json + models/model.pt)"
        raise SegmentationError(describe(problem, path=folder,
                                         fix="Export the network as TorchScript (.ts) or as a MONAI bundle."))
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(settings))
    network = parser.get_parsed_content("network_def")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    network.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    return SegmentationModel(network.eval(), config, folder)
