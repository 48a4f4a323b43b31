"""Reports: facts gathered into a :class:`ReportData` record, rendered by Jinja2 templates to HTML and Markdown."""

from emolab.report.data import ReportData, gather
from emolab.report.render import render_html, render_markdown, write_report

__all__ = ["ReportData", "gather", "render_html", "render_markdown", "write_report"]
