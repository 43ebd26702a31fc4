"""The sweep's answer where people read it first: the console summary and TensorBoard's sweep run.

Both show the report's own numbers (report_tables.config_rows, the study's claims): per config
the headline loss with its errors and what it learned beyond unigram, the verdicts, and the
throughput ranking with ties. TensorBoard gets them as text and the report's figures as
images: per-config values written as scalars against an axis value would be smoothed by
TensorBoard's default and read as a blend of configs.
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table as RichTable

from raybio.analysis import report_tables as tables
from raybio.analysis.document import Document, Figure, to_markdown
from raybio.analysis.report import throughput_answer
from raybio.analysis.verdict import Verdict
from raybio.tune.record import SweepRecord


def print_summary(record: SweepRecord, console: Console | None = None) -> None:
    """The per-config table, each claim's verdicts and the throughput ranking."""
    console = console or Console(width=160)
    rows = tables.config_rows(record)
    shown = tables.config_table(rows)
    table = RichTable(title="raybio sweep summary (headline: mask-only / next-token validation loss)")
    for col in shown:
        table.add_column(col, justify="right")
    for _, row in shown.iterrows():
        table.add_row(*map(str, row.tolist()))
    console.print(table)
    ok = record.ok
    if len(ok) and "val_unigram_loss" in ok:
        console.print(
            f"references: unigram loss of the same validation positions {ok['val_unigram_loss'].mean():.4f} nats; "
            f"untrained model {ok['init_val_loss'].min():.4f} nats; the eval SE is the token-level standard error "
            "of each trial's validation loss (windows as clusters)"
        )
    for claim in record.fits.get("claims", []):
        console.print(f"claim ({claim['source']}): {claim['text']}")
        for c in claim["comparisons"]:
            v = Verdict(**{k: c[k] for k in Verdict.__dataclass_fields__})
            console.print(f"  {c['treatment']} vs {c['baseline']}: {v.summary(claim.get('unit') or '')} -> {v.label}")
    console.print(throughput_answer(rows).replace("**", ""))
    for _, row in record.results[record.results["status"] != "OK"].iterrows():
        console.print(f"[red]trial {row['trial_id']} failed:[/red] {row['error']}")


def write_sweep_tensorboard(doc: Document, logdir: str) -> None:
    """The report's Answer and Results as text, and its figures as images, in `<logdir>/sweep`."""
    import matplotlib.image as mpimg
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(f"{logdir}/sweep") as w:
        for section in doc.sections:
            if section.title in ("Answer", "Results"):
                w.add_text(f"sweep/{section.title.lower()}", to_markdown(Document(section.title, [section])))
        for fig in doc.figures():
            if isinstance(fig, Figure) and not fig.name.startswith("anatomy_"):
                image = mpimg.imread(io.BytesIO(fig.png))[..., :3]
                w.add_image(f"sweep/{fig.name.removesuffix('.png')}", image, 0, dataformats="HWC")
