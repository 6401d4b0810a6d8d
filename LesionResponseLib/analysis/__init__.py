"""Analysis stage: per-ROI quantification, track response and heterogeneity, the ``analyze`` pipeline with
its per-stage cache, the output folder (DOMAIN.md §8) and cohort figures."""

from LesionResponseLib.analysis.cohort import cohort_summary, cohort_table
from LesionResponseLib.analysis.outputs import OutputFolderError, load_analysis, load_labels, write_outputs
from LesionResponseLib.analysis.pipeline import AnalysisError, RunReport, analyze, run_pipeline
from LesionResponseLib.analysis.quantify import QuantificationError, measure_rois
from LesionResponseLib.analysis.response import assess_response, roi_categories

__all__ = ["AnalysisError", "OutputFolderError", "QuantificationError", "RunReport", "analyze",
           "assess_response", "cohort_summary", "cohort_table", "load_analysis", "load_labels", "measure_rois",
           "roi_categories", "run_pipeline", "write_outputs"]
