"""Disagreement analysis (DiZiNER): annotator weights, elite set, per-token scores
(p, D_conf, D_type, U_bnd, U*), hotspots with categories and error types, error
profiles, agreement figures and aggregation. Pure numpy; see ``docs/analysis.md``.
"""
from diziner.analysis.aggregate import aggregate, aggregate_spans
from diziner.analysis.core import AnalysisResult, ArrayAnalysis, analyze, analyze_arrays, hot_runs
from diziner.analysis.records import AggregatedSpan, ErrorProfile, HotRun, Hotspot

__all__ = ["AggregatedSpan", "AnalysisResult", "ArrayAnalysis", "ErrorProfile", "HotRun", "Hotspot", "aggregate",
           "aggregate_spans", "analyze", "analyze_arrays", "hot_runs"]
