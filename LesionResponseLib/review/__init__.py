"""review stage of LesionResponse."""
