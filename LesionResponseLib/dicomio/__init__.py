"""DICOM input: index a folder, choose each study's PET and CT, compute SUV (any vendor), load volumes."""

from LesionResponseLib.dicomio.index import DicomIndex, DicomInputError, index_folder
from LesionResponseLib.dicomio.suv import SuvCalibration, lean_body_mass_kg, suv_calibration
from LesionResponseLib.dicomio.timepoints import (
    IgnoredSeries,
    Inventory,
    LoadedTimePoint,
    find_timepoints,
    load_timepoint,
)
from LesionResponseLib.dicomio.volume import load_series

__all__ = ["DicomIndex", "DicomInputError", "IgnoredSeries", "Inventory", "LoadedTimePoint", "SuvCalibration",
           "find_timepoints", "index_folder", "lean_body_mass_kg", "load_series", "load_timepoint",
           "suv_calibration"]
