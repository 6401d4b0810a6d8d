"""dicomio stage of LesionResponse."""
