"""Self-contained HTML pages: inline CSS, images embedded as base64 PNG, no scripts.

A Content-Security-Policy in the page forbids scripts and every network fetch, so a report
opens the same offline, in a mail attachment or in a paper's supplement. Every string that
reaches the page goes through :func:`esc` (class names come from folder names).
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = [
    "CSP", "CSS", "esc", "fmt", "png_img", "figure", "table", "row", "key_values", "para", "pre", "Section", "page",
]


#: no scripts, no fetches; images only from data: URLs, styles only inline
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0;background:#f6f8fa}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:20px;margin:34px 0 10px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:16px;margin:20px 0 6px}
.sub{color:#57606a;margin:0 0 14px}
nav{font-size:14px;margin:10px 0 6px}nav a{margin-right:14px;color:#0969da;text-decoration:none}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13.5px;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d0d7de;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:700}
figure{margin:10px 0 18px}figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{color:#57606a;font-size:13px;margin-top:3px}
pre{background:#f6f8fa;padding:10px;overflow-x:auto;font-size:12.5px;max-height:420px}
.note{color:#57606a;font-size:13.5px}.warn{color:#9a6700}
.row{display:flex;flex-wrap:wrap;gap:6px 22px;align-items:flex-start}.row figure{margin:6px 0 10px}
"""


def esc(value: object) -> str:
    """``value`` as HTML text: ``& < > " '`` escaped."""
    return html.escape(str(value), quote=True)


def fmt(value: object, digits: int = 3) -> str:
    """A cell's text: floats rounded, NaN and None blank."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def png_img(source: bytes | str | Path, alt: str, scale: float = 0.75) -> str:
    """An ``<img>`` holding a PNG (file or bytes) as a data URL, shown at ``scale`` of its pixel
    width (figures are saved at 120 dpi) and never wider than the page."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    width = int.from_bytes(data[16:20], "big") if data[:8] == b"\x89PNG\r\n\x1a\n" else 0
    size = f' width="{int(width * scale)}"' if width else ""
    return f'<img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" alt="{esc(alt)}"{size}>'


def figure(path: str | Path, caption: str) -> str:
    return f"<figure>{png_img(path, caption)}<figcaption>{esc(caption)}</figcaption></figure>"


def table(df: pd.DataFrame, digits: int = 3, bold: dict[int, set[int]] | None = None) -> str:
    """``df`` as an HTML table (header from the columns, every cell escaped); numbers right-aligned.
    ``bold``: row position -> column positions to show in bold."""
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = []
    for i, row in enumerate(df.itertuples(index=False)):
        cells = []
        for j, v in enumerate(row):
            cls = ["num"] if isinstance(v, (int, float)) and not isinstance(v, bool) else []
            cls += ["best"] if bold and j in bold.get(i, ()) else []
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{esc(fmt(v, digits))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def row(*items: str) -> str:
    """HTML blocks (figures) side by side, wrapping to the next line when the page is narrow."""
    return f'<div class="row">{"".join(items)}</div>'


def key_values(pairs: list[tuple[str, object]]) -> str:
    """A two-column table of labelled values (the values escaped)."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>" for k, v in pairs if v not in (None, ""))
    return f"<table><tbody>{rows}</tbody></table>"


def link(href: str, text: str) -> str:
    """A paragraph holding a link to a file of the run (a relative path)."""
    return f'<p><a href="{esc(href)}">{esc(text)}</a></p>'


def para(text: str, cls: str = "") -> str:
    return f'<p class="{cls}">{esc(text)}</p>' if cls else f"<p>{esc(text)}</p>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


@dataclass
class Section:
    """One ``<h2>`` section; ``body`` is HTML built with this module's helpers."""

    anchor: str
    title: str
    body: str


def page(title: str, subtitle: str, sections: list[Section]) -> str:
    """A whole HTML document with a table of contents."""
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main><h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p><nav>{nav}</nav>{body}"
        "</main></body></html>\n"
    )
