"""A matplotlib figure as a light, self-contained HTML page: inline SVG with hover tooltips, no JavaScript.

Why not plotly: MLflow's artifact viewer shows an HTML artifact in a sandboxed iframe loaded from a
blob: URL, so a page cannot load a sibling file (a shared plotly.js), and a page that embeds plotly.js
(4.6 MB) took tens of seconds to appear there. The same picture as inline SVG is tens of KB, needs no
network and shows at once; every point or line carries an SVG <title>, which browsers show on hover.
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path

from weightmom.files import atomic_write

_STYLE = """body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:12px;color:#222}
svg{max-width:100%;height:auto}
p.hint{color:#666;font-size:13px;margin:4px 0 12px}
table{border-collapse:collapse;font-size:13px}
th,td{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left;white-space:nowrap}
th{background:#f5f5f5}"""


MIN_SCALE = 0.85   # how far a figure may shrink to fit a narrow page (MLflow's artifact pane is ~600 px wide)


class Tooltips:
    """Hover texts for a figure's artists, written into its SVG as <title> elements."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def attach(self, artist, text: str) -> None:
        gid = f"tip{len(self.texts)}"
        artist.set_gid(gid)
        self.texts[gid] = text


def figure_svg(figure, tooltips: Tooltips | None = None) -> str:
    """The figure as an <svg> element at its own size (a little smaller on a narrow page), with its tooltips."""
    import matplotlib

    buffer = io.StringIO()
    # Text as <text> (smaller and selectable), and ids that do not change from one run to the next.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "weightmom"}):
        figure.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    # Shrink to fit a narrow page, but not past legibility: below that the page scrolls sideways instead.
    width = re.search(r'<svg[^>]*? width="([\d.]+)pt"', svg)
    if width:
        svg = svg.replace("<svg", f'<svg style="min-width:{float(width[1]) * MIN_SCALE:.0f}pt"', 1)
    for gid, text in (tooltips.texts if tooltips else {}).items():
        svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{html.escape(text)}</title>', 1)
    return svg


def write_page(path: str | Path, title: str, figure, tooltips: Tooltips | None = None, hint: str = "",
               extra_html: str = "") -> None:
    """One HTML file: the figure, a line of help under it, then `extra_html` (already escaped)."""
    body = figure_svg(figure, tooltips)
    hint_html = f'<p class="hint">{html.escape(hint)}</p>' if hint else ""
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head>\n<body>\n{body}\n{hint_html}\n{extra_html}\n</body></html>\n")
    atomic_write(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))


def table_html(rows: list[dict], columns: list[str], fmt) -> str:
    """A plain HTML table of `columns` over `rows`, each cell formatted by `fmt`."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(row.get(c)))}</td>" for c in columns) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
