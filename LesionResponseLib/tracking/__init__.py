"""tracking stage of LesionResponse."""
