"""LesionResponse: lesion-by-lesion response assessment of longitudinal [68Ga]Ga-DOTATATE PET/CT."""

__version__ = "0.1.0"
