"""report stage of LesionResponse: patient HTML/PDF, cohort summary, DICOM SEG + SR export, C-STORE."""

from LesionResponseLib.report.cohort import write_cohort_report
from LesionResponseLib.report.data import ReportInputError
from LesionResponseLib.report.dicom_export import export_dicom, track_uid
from LesionResponseLib.report.pacs import PacsError, send_to_pacs
from LesionResponseLib.report.patient import write_patient_report

__all__ = ["PacsError", "ReportInputError", "export_dicom", "send_to_pacs", "track_uid", "write_cohort_report",
           "write_patient_report"]
