"""A synthetic longitudinal [68Ga]DOTATATE PET/CT patient with ground truth, written as real DICOM.

``simulate_patient`` renders it in memory (training data); ``generate_patient`` writes the phantom folder
(DICOM in vendor flavours, ``truth.json``, truth label maps, MIPs).
"""

from LesionResponseLib.phantom.anatomy import ORGAN_LABELS, PHYSIOLOGICAL_ORGANS
from LesionResponseLib.phantom.dicom_writer import VENDORS
from LesionResponseLib.phantom.errors import PhantomError
from LesionResponseLib.phantom.generate import generate_patient, load_truth
from LesionResponseLib.phantom.simulate import (
    PHANTOM_VERSION,
    SimulatedPatient,
    SimulatedTimepoint,
    simulate_patient,
)

__all__ = ["ORGAN_LABELS", "PHANTOM_VERSION", "PHYSIOLOGICAL_ORGANS", "VENDORS", "PhantomError",
           "SimulatedPatient", "SimulatedTimepoint", "generate_patient", "load_truth", "simulate_patient"]
