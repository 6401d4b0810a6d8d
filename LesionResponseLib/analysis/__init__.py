"""Analysis stage: per-ROI quantification, track response and heterogeneity, the output folder
(docs/DOMAIN.md §8) and cohort figures. The ``analyze`` pipeline that runs every stage is in
:mod:`LesionResponseLib.workflow`."""

from LesionResponseLib.analysis.cohort import (
    cohort_summary,
    cohort_table,
    truth_cohort_summary,
    truth_cohort_table,
)
from LesionResponseLib.analysis.outputs import OutputFolderError, load_analysis, load_labels, write_outputs
from LesionResponseLib.analysis.quantify import QuantificationError, measure_rois
from LesionResponseLib.analysis.reference_regions import measure_sphere as measure_reference
from LesionResponseLib.analysis.response import assess_response, roi_categories
from LesionResponseLib.analysis.sites import lesion_sites

__all__ = ["OutputFolderError", "QuantificationError", "assess_response", "cohort_summary", "cohort_table", "truth_cohort_summary", "truth_cohort_table",
           "lesion_sites", "load_analysis", "load_labels", "measure_reference", "measure_rois", "roi_categories",
           "write_outputs"]
