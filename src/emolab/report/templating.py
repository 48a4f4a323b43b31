"""The Jinja2 environment of the report and the model card: templates, number filters, embedded figures."""

from __future__ import annotations

import base64
from pathlib import Path

import jinja2

from emolab.compare import leaderboard_markdown
from emolab.compression.measure import table_markdown
from emolab.report.published import METRIC_NAMES
from emolab.calibration import metrics_markdown as calibration_table
from emolab.robustness.evaluate import table_markdown as robustness_table
from emolab.significance import p_phrase, with_interval


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int) and abs(value) >= 10000:
        return f"{value:,}"
    return str(value)


def _signed(value) -> str:
    return "–" if value is None else f"{value:+.4f}"


def _paired(d) -> str:
    """A paired difference: ``+0.1234 [+0.100, +0.150], p=0.001``."""
    if not d:
        return "–"
    lo, hi = d["interval"]
    return f"{d['difference']:+.4f} [{lo:+.3f}, {hi:+.3f}], {p_phrase(d)}"


def environment(run: Path) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("emolab.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.ChainableUndefined)

    def embed(rel: str) -> str:
        data = (run / rel).read_bytes()
        return "data:image/png;base64," + base64.b64encode(data).decode("ascii")

    env.filters.update(fmt=_fmt, signed=_signed, embed=embed, paired=_paired, metric_name=lambda k: METRIC_NAMES.get(k, k),
                       ci=lambda v, interval=None: with_interval(v, interval or None))
    env.globals["leaderboard_markdown"] = leaderboard_markdown
    env.globals["compression_table"] = table_markdown
    env.globals["robustness_table"] = robustness_table
    env.globals["calibration_table"] = calibration_table
    return env
