"""The segmentation model: config, network, preprocessing, versioned file format and loaders.

Network: MONAI ``SegResNet`` (init_filters=8, ~1.2 M parameters, 4.7 MB). Chosen over DynUNet because it
is compact, residual, uses GroupNorm (stable at batch size 2) and runs a whole-body PET on 2 CPU cores in
seconds. Input: SUV PET only (CT is optional in the pipeline and vendor-dependent). Normalisation:
``log1p(SUV)`` - SUV is already a physical, vendor-neutral scale; log1p compresses the heavy tail
(lesions SUV 8-80) without per-image z-scoring, which would let one hot bladder rescale the whole image.
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

MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models"
DEFAULT_MODEL_PATH = MODELS_DIR / "lesion_segresnet_v4.pt"
FILE_FORMAT = "lesion-response-segmentation-model"


class SegmentationError(LesionResponseError):
    """A model file, bundle or segmentation input that cannot be used."""


@dataclass
class ModelConfig:
    """How a model expects its input and how its output is read."""

    version: str = "1.0.0"
    architecture: str = "SegResNet"
    init_filters: int = 8
    channels: tuple[str, ...] = ("pet_suv",)  # input channels, in order
    spacing_mm: tuple[float, float, float] = (4.0, 4.0, 4.0)  # isotropic 4 mm = typical PET voxel
    normalisation: str = "log1p_suv"  # log1p_suv | none
    patch_size: tuple[int, int, int] = (64, 64, 64)  # voxels; 256 mm sees a whole spleen or kidney
    activation: str = "sigmoid"  # sigmoid (1 output channel) | softmax (lesion = channel 1)
    threshold: float = 0.5  # probability above which a voxel is lesion
    trained_on: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        names = cls.__dataclass_fields__
        clean = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
        return cls(**clean)


def build_network(config: ModelConfig):
    """The untrained MONAI network for ``config``."""
    from monai.networks.nets import SegResNet

    out_channels = 1 if config.activation == "sigmoid" else 2
    return SegResNet(spatial_dims=3, in_channels=len(config.channels), out_channels=out_channels,
                     init_filters=config.init_filters, blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1))


def normalise(suv: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Network input from an SUV array (float32)."""
    if config.normalisation == "log1p_suv":
        return np.log1p(np.clip(suv, 0.0, None)).astype(np.float32)
    return suv.astype(np.float32)


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

    def probability(self, pet_suv: sitk.Image, progress: bool = False, device: str | None = None) -> sitk.Image:
        """Lesion probability (0-1, float32) on the model's grid (``config.spacing_mm``)."""
        import torch
        from monai.inferers import sliding_window_inference

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch.set_num_threads(min(2, torch.get_num_threads()))
        image = resample_to_spacing(sitk.Cast(pet_suv, sitk.sitkFloat32), self.config.spacing_mm)
        suv = sitk.GetArrayFromImage(image)  # z, y, x
        box = _body_box(suv)
        tensor = torch.from_numpy(normalise(suv[box], self.config))[None, None].to(device)
        network = self.network.to(device).eval()
        with torch.inference_mode():
            logits = sliding_window_inference(tensor, self.config.patch_size, sw_batch_size=2, predictor=network,
                                              overlap=0.25, mode="gaussian", progress=progress).float()
        prob = torch.sigmoid(logits[:, :1]) if self.config.activation == "sigmoid" else \
            torch.softmax(logits, 1)[:, 1:2]
        full = np.zeros(suv.shape, np.float32)
        full[box] = prob[0, 0].cpu().numpy()
        out = sitk.GetImageFromArray(full)
        out.CopyInformation(image)
        return out


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
