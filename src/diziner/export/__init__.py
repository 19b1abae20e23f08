"""Exports of a run's annotations (and guideline) to annotation tools and training formats."""
from diziner.export.formats import ALL_FORMATS, FORMATS, export
from diziner.export.source import ExportDoc, ExportSource, ExportSpan, load_source

__all__ = ["ALL_FORMATS", "FORMATS", "ExportDoc", "ExportSource", "ExportSpan", "export", "load_source"]
