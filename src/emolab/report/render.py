"""Render a :class:`ReportData` with Jinja2: one self-contained HTML file (images embedded) and a Markdown twin."""

from __future__ import annotations

import base64
from pathlib import Path

import jinja2

from emolab.compare import leaderboard_markdown
from emolab.compression.compress import table_markdown
from emolab.report.data import ReportData, gather
from emolab.report.published import METRIC_NAMES
from emolab.rundir import atomic_write
from emolab.significance import with_interval


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
    return f"{d['difference']:+.4f} [{lo:+.3f}, {hi:+.3f}], p{' ' if d.get('p_text', '').startswith('<') else '='}{d.get('p_text') or format(d['p_value'], '.2g')}"


def _env(run: Path) -> jinja2.Environment:
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
    return env


def render_markdown(data: ReportData, run: Path, *, html: bool = False) -> str:
    """The report as Markdown; ``html`` lets the text keep inline highlighting meant for the HTML twin (a plain
    Markdown viewer gets no raw HTML)."""
    return _env(run).get_template("report.md.j2").render(r=data, html=html)


def render_html(data: ReportData, run: Path) -> str:
    """The Markdown report converted to HTML, with every figure embedded so the file opens offline."""
    import markdown

    env = _env(run)
    body = markdown.markdown(render_markdown(data, run, html=True), extensions=["tables", "fenced_code"])
    for _caption, rel in [*data.figures, *data.face_figures]:
        body = body.replace(f'src="{rel}"', f'src="{env.filters["embed"](rel)}"')
    return env.get_template("report.html.j2").render(r=data, body=body)


def write_report(run_path: str | Path, *, others: list[str | Path] = (), say=print) -> tuple[Path, Path]:
    """Write ``report.html``, ``report.md`` and the model card ``README.md`` into the run directory."""
    from emolab.report.modelcard import write_model_card

    run = Path(run_path)
    data = gather(run, others=list(others))
    html, md = run / "report.html", run / "report.md"
    atomic_write(html, render_html(data, run))
    atomic_write(md, render_markdown(data, run))
    write_model_card(run, data=data)
    say(f"wrote {html}, {md} and the model card README.md")
    return html, md
