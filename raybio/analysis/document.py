"""A report as data: a `Document` of `Section`s of blocks, and one Markdown and one HTML renderer.

Every raybio report (sweep, downstream, evaluation) builds sections; these renderers are the
only code that turns them into text. Inline markup in text is `**bold**` and `` `code` `` only:
Markdown keeps it, HTML escapes the text first and then converts it, so a `<sweep dir>` in a
sentence renders as written.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field

import pandas as pd

from raybio.data import storage


@dataclass
class Text:
    """A paragraph (`callout=True`: a highlighted caveat)."""

    text: str
    callout: bool = False


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    frame: pd.DataFrame
    caption: str = ""
    collapsed: bool = False  # HTML: folded under its caption (long per-layer tables)


@dataclass
class Figure:
    """A PNG written beside the report as `name` (Markdown links it, HTML embeds it)."""

    name: str
    png: bytes
    caption: str = ""


@dataclass
class Code:
    text: str


Block = Text | Bullets | Table | Figure | Code


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    subsections: list[Section] = field(default_factory=list)

    def figures(self) -> list[Figure]:
        own = [b for b in self.blocks if isinstance(b, Figure)]
        return own + [f for s in self.subsections for f in s.figures()]


@dataclass
class Document:
    title: str
    sections: list[Section]

    def figures(self) -> list[Figure]:
        return [f for s in self.sections for f in s.figures()]


# ----------------------------------------------------------------------------------- Markdown


def to_markdown(doc: Document) -> str:
    lines = [f"# {doc.title}", ""]
    for section in doc.sections:
        lines += _md_section(section, level=2)
    return "\n".join(lines).rstrip() + "\n"


def section_markdown(section: Section, level: int = 2) -> str:
    """One section (and its subsections) as Markdown, its title at heading `level`."""
    return "\n".join(_md_section(section, level)).rstrip() + "\n"


def _md_section(section: Section, level: int) -> list[str]:
    lines = [f"{'#' * level} {section.title}", ""]
    for block in section.blocks:
        lines += [*_md_block(block), ""]
    for sub in section.subsections:
        lines += _md_section(sub, level + 1)
    return lines


def _md_block(block: Block) -> list[str]:
    if isinstance(block, Text):
        return [f"> {block.text}" if block.callout else block.text]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items]
    if isinstance(block, Table):
        caption = [f"*{block.caption}*", ""] if block.caption else []
        return [*caption, block.frame.to_markdown(index=False)]
    if isinstance(block, Figure):
        return [f"![{block.caption or block.name}]({block.name})"]
    return ["```", block.text, "```"]


def png(fig) -> bytes:
    """PNG bytes of a matplotlib figure (closed afterwards): what a `Figure` block holds."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# --------------------------------------------------------------------------------------- HTML

STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.4}"
    "table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;"
    "text-align:right}th{background:#f3f3f3}caption{caption-side:top;text-align:left;font-style:italic;"
    "padding:.2em 0}img{max-width:100%;display:block;margin:.6em 0}.callout{background:#fff4d6;border-left:4px "
    "solid #e0a000;padding:.4em .8em}.table-wrap{overflow-x:auto}code{background:#f3f3f3;padding:0 .2em}"
    "pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:.5em}details{margin:.3em 0}"
)
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def inline(text: str) -> str:
    """Escaped HTML of a text with `**bold**` and `` `code` `` markup."""
    out = html.escape(text)
    out = _CODE.sub(r"<code>\1</code>", out)
    return _BOLD.sub(r"<b>\1</b>", out)


def to_html(doc: Document) -> str:
    body = [f"<h1>{inline(doc.title)}</h1>"]
    for section in doc.sections:
        body += _html_section(section, level=2)
    head = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(doc.title)}</title>"
    return f"{head}<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"


def _html_section(section: Section, level: int) -> list[str]:
    parts = [f"<h{level}>{inline(section.title)}</h{level}>"]
    parts += [_html_block(b) for b in section.blocks]
    for sub in section.subsections:
        parts += _html_section(sub, min(level + 1, 6))
    return parts


def _html_block(block: Block) -> str:
    if isinstance(block, Text):
        return f"<p class='callout'>{inline(block.text)}</p>" if block.callout else f"<p>{inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{inline(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode()
        return f"<img alt='{html.escape(block.caption or block.name)}' src='data:image/png;base64,{data}'>"
    return f"<pre>{html.escape(block.text)}</pre>"


def _html_table(table: Table) -> str:
    frame = table.frame.to_html(index=False, escape=True, border=0, na_rep="-")
    if table.collapsed:
        return f"<details><summary>{inline(table.caption)}</summary><div class='table-wrap'>{frame}</div></details>"
    caption = f"<p><i>{inline(table.caption)}</i></p>" if table.caption else ""
    return f"{caption}<div class='table-wrap'>{frame}</div>"


# -------------------------------------------------------------------------------------- files


def render(doc: Document, stem: str = "report") -> dict[str, bytes]:
    """Every file of a document by name: `<stem>.md`, `<stem>.html` and each figure's PNG."""
    files = {fig.name: fig.png for fig in doc.figures()}
    return files | {f"{stem}.md": to_markdown(doc).encode(), f"{stem}.html": to_html(doc).encode()}


def write_document(doc: Document, out_dir: str, stem: str = "report") -> dict[str, str]:
    """The rendered files under `out_dir` (local or s3://), each written atomically; the md and html URIs."""
    for name, data in render(doc, stem).items():
        storage.write_bytes_atomic(storage.join(out_dir, name), data)
    return {"html": storage.join(out_dir, f"{stem}.html"), "markdown": storage.join(out_dir, f"{stem}.md")}
