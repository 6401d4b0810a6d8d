"""phantom stage of LesionResponse."""
