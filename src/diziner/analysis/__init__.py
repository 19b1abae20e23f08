"""Disagreement analysis (DiZiNER): annotator weights, elite set, per-token scores
(p, D_conf, D_type, U_bnd, U*), hotspots with categories and error types, error
profiles, agreement figures and aggregation. Pure numpy; see ``docs/analysis.md``.
"""
from diziner.analysis.aggregate import aggregate
from diziner.analysis.core import AnalysisResult, ArrayAnalysis, analyze, analyze_arrays, hotspot_dicts

__all__ = ["AnalysisResult", "ArrayAnalysis", "aggregate", "analyze", "analyze_arrays", "hotspot_dicts"]
