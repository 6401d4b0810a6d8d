"""Segmentation stage: lesion-ROIs from SUV PET with a project-trained MONAI model or a threshold baseline."""

from LesionResponseLib.segmentation.components import drop_equivocal_rois, label_rois
from LesionResponseLib.segmentation.inference import SegmentationOutput, segment, segment_with_evidence
from LesionResponseLib.segmentation.model import (
           DEFAULT_MODEL_PATH,
           ModelConfig,
           SegmentationError,
           SegmentationModel,
           load_model,
           save_model,
)
from LesionResponseLib.segmentation.threshold import liver_reference, threshold_mask
from LesionResponseLib.segmentation.training import train

__all__ = ["DEFAULT_MODEL_PATH", "ModelConfig", "SegmentationError", "SegmentationModel", "SegmentationOutput",
           "drop_equivocal_rois", "label_rois", "liver_reference", "load_model", "save_model", "segment",
           "segment_with_evidence", "threshold_mask", "train"]
