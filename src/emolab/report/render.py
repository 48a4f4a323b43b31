"""Render a :class:`ReportData` with Jinja2: one self-contained HTML file (images embedded) and a Markdown twin."""

from __future__ import annotations

from pathlib import Path

from emolab.report.data import ReportData, gather
from emolab.report.templating import environment
from emolab.rundir import atomic_write


def render_markdown(data: ReportData, run: Path, *, html: bool = False) -> str:
    """The report as Markdown; ``html`` lets the text keep inline highlighting meant for the HTML twin (a plain
    Markdown viewer gets no raw HTML)."""
    return environment(run).get_template("report.md.j2").render(r=data, html=html)


def render_html(data: ReportData, run: Path) -> str:
    """The Markdown report converted to HTML, with every figure embedded so the file opens offline."""
    import markdown

    env = environment(run)
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
