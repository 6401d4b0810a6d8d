"""report stage of LesionResponse."""
