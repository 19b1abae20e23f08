"""The self-contained HTML report of a refine run or an analyze folder (``diziner report``)."""
from diziner.report.data import ReportData, load_report_data
from diziner.report.html import build_report, is_our_report, render_report

__all__ = ["ReportData", "build_report", "is_our_report", "load_report_data", "render_report"]
