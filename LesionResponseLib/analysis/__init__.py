"""analysis stage of LesionResponse."""
