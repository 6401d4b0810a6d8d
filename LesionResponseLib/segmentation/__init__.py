"""segmentation stage of LesionResponse."""
