"""The report document model: one Markdown and one HTML rendering of the same sections."""

from __future__ import annotations

import base64

import pandas as pd

from raybio.analysis.document import (
    Bullets,
    Code,
    Document,
    Figure,
    Section,
    Table,
    Text,
    to_html,
    to_markdown,
    write_document,
)

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def _doc() -> Document:
    table = pd.DataFrame({"config": ["experts=8 <moe>"], "loss": ["3.7000 ± 0.0020"]})
    inner = Section("Fit", [Text("inner")])
    return Document(
        "report: demo",
        [
            Section(
                "Answer",
                [
                    Text("run `raybio evaluate <sweep dir>` for **downstream** scores"),
                    Text("one seed: no verdict", callout=True),
                    Bullets(["a < b", "**c**"]),
                    Table(table, caption="results"),
                    Figure("loss.png", PNG, caption="loss vs compute"),
                    Code("python sweeps/x.py --a <b>"),
                ],
                [inner],
            )
        ],
    )


def test_html_escapes_text_and_keeps_bold_and_code_markup():
    page = to_html(_doc())
    assert "<code>raybio evaluate &lt;sweep dir&gt;</code>" in page
    assert "<b>downstream</b>" in page
    assert "<li>a &lt; b</li>" in page and "<li><b>c</b></li>" in page
    assert "experts=8 &lt;moe&gt;" in page
    assert "--a &lt;b&gt;</pre>" in page
    assert "<sweep dir>" not in page


def test_markdown_keeps_markup_links_figures_and_nests_subsections():
    md = to_markdown(_doc())
    assert md.startswith("# report: demo\n")
    assert "## Answer" in md and "### Fit" in md
    assert "run `raybio evaluate <sweep dir>` for **downstream** scores" in md
    assert "> one seed: no verdict" in md
    assert "![loss vs compute](loss.png)" in md
    assert "| experts=8 <moe> | 3.7000 ± 0.0020 |" in md


def test_html_embeds_each_figure_and_markdown_and_html_carry_the_same_sections():
    doc = _doc()
    page, md = to_html(doc), to_markdown(doc)
    assert page.count("data:image/png;base64,") == 1
    for title in ("Answer", "Fit"):
        assert f">{title}</h" in page and f" {title}\n" in md


def test_write_document_writes_markdown_html_and_pngs(tmp_path):
    paths = write_document(_doc(), str(tmp_path / "report"))
    assert (tmp_path / "report" / "loss.png").read_bytes() == PNG
    assert paths["html"].endswith("report.html") and (tmp_path / "report" / "report.md").exists()
