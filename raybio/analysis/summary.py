"""The report where people read it first: the console summary and TensorBoard's sweep run.

Both are views of the report document itself (its Answer and per-config Results), so the
console, TensorBoard and the HTML report can never disagree. TensorBoard gets them as text and
the report's figures as images: per-config values written as scalars against an axis value
would be smoothed by TensorBoard's default and read as a blend of configs.
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.markdown import Markdown

from raybio.analysis.document import Document, Section, Table, section_markdown

SUMMARY_SECTIONS = ("Answer", "Results")


def summary_document(doc: Document) -> Document:
    """The Answer and the per-config results table (not the folded per-trial ones) of a report."""
    kept = []
    for section in doc.sections:
        if section.title in SUMMARY_SECTIONS:
            blocks = [b for b in section.blocks if not (isinstance(b, Table) and b.collapsed)]
            kept.append(Section(section.title, blocks))
    return Document(f"summary: {doc.title.removeprefix('raybio sweep report: ')}", kept)


def publish_summary(doc: Document, tb_dir: str, console: Console | None = None) -> None:
    """The summary on the console, and in `<tb_dir>/sweep` as text beside the report's figures as images."""
    import matplotlib.image as mpimg
    from torch.utils.tensorboard import SummaryWriter

    summary = summary_document(doc)
    parts = {s.title: section_markdown(s) for s in summary.sections}
    (console or Console(width=160)).print(Markdown("\n".join(parts.values())))
    if not tb_dir:
        return
    with SummaryWriter(f"{tb_dir}/sweep") as w:
        for title, text in parts.items():
            w.add_text(f"sweep/{title.lower()}", text)
        for fig in doc.figures():
            if not fig.name.startswith("anatomy_"):
                image = mpimg.imread(io.BytesIO(fig.png))[..., :3]
                w.add_image(f"sweep/{fig.name.removesuffix('.png')}", image, 0, dataformats="HWC")
