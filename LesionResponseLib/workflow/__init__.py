"""Orchestration above the stages: the ``analyze`` pipeline (its cached stages in ``workflow.stages``, the
re-applied review), the demo and the cohort runner. It imports the stage packages (``dicomio``,
``segmentation``, ``analysis``, ``tracking``, ``review``, ``report``); none of them imports it
(docs/ARCHITECTURE.md)."""

from LesionResponseLib.workflow.pipeline import AnalysisError, RunReport, analyze, run_pipeline

__all__ = ["AnalysisError", "RunReport", "analyze", "run_pipeline"]
