"""One static HTML report that opens offline: sections of text, tables and PNGs (embedded
as data URIs, so the file can be mailed or archived alone)."""

from __future__ import annotations

import base64
import datetime as dt
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;border-bottom:2px solid #345;padding-bottom:.3rem}h2{font-size:1.25rem;margin-top:2rem;color:#234}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{border:1px solid #ccd;padding:.25rem .6rem;
text-align:right}th{background:#eef2f7}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #dde;margin:.5rem 0}.meta{color:#667;font-size:.85rem}
.warn{background:#fff4e5;border-left:4px solid #f0a030;padding:.4rem .8rem}
"""


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)  # plain text (escaped)
    tables: list[tuple[list[str], list[list[Any]]]] = field(default_factory=list)  # (header, rows)
    images: list[str | Path] = field(default_factory=list)  # PNG paths
    warnings: list[str] = field(default_factory=list)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _img(path: str | Path) -> str:
    p = Path(path)
    data = base64.b64encode(p.read_bytes()).decode()
    return f'<img alt="{html.escape(p.name)}" src="data:image/png;base64,{data}">'


def render(title: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='meta'>generated {dt.datetime.now().isoformat(timespec='seconds')} by seizurewatch</p>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p class='warn'>{html.escape(w)}</p>" for w in s.warnings]
        parts += [f"<p>{html.escape(p)}</p>" for p in s.paragraphs]
        for header, rows in s.tables:
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        parts += [_img(i) for i in s.images]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: str | Path, title: str, sections: list[Section]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render(title, sections), encoding="utf-8")
    return p
