"""DICOM input: index a folder, choose each study's PET and CT, compute SUV (any vendor), load volumes."""

from LesionResponseLib.dicomio.calibration import SuvResult, compute_suv_factor
from LesionResponseLib.dicomio.errors import (
    CorruptFileError,
    DicomInputError,
    GeometryError,
    PatientSelectionError,
    SuvTagError,
)
from LesionResponseLib.dicomio.index import DicomIndex, index_folder
from LesionResponseLib.dicomio.suv import lean_body_mass_kg, suv_bw_factor
from LesionResponseLib.dicomio.timepoints import (
    IgnoredSeries,
    Inventory,
    LoadedTimePoint,
    PatientSummary,
    find_timepoints,
    load_timepoint,
)
from LesionResponseLib.dicomio.tracer import TracerError
from LesionResponseLib.dicomio.volume import load_series

__all__ = ["CorruptFileError", "DicomIndex", "DicomInputError", "GeometryError", "IgnoredSeries", "Inventory",
           "LoadedTimePoint", "PatientSelectionError", "PatientSummary", "SuvResult", "SuvTagError", "TracerError",
           "compute_suv_factor", "find_timepoints", "index_folder", "lean_body_mass_kg", "load_series",
           "load_timepoint", "suv_bw_factor"]
