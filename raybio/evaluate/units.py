"""A unit of work: one loaded model (or the baselines) x one loaded task, looping over protocols x seeds.

`run_unit` is what one Ray task runs. A backbone unit loads its checkpoint's weights once;
`pretrained` uses them, `untrained` draws the same architecture from a seeded random init
per seed. Every trainable model tries its grid on seed 0 and keeps the value with the lowest
validation loss for the other seeds (`_tuned`). Each finished row goes to the journal at once;
a row already in the journal is reused, not rerun.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from raybio.evaluate import backbone as bb
from raybio.evaluate.baselines import BASELINES, grid
from raybio.evaluate.journal import Journal, row_key
from raybio.evaluate.protocols import EvalConfig, Features, finetune, probe
from raybio.evaluate.retrieval import CONTROLS, composition, embed_pairs, retrieve
from raybio.evaluate.task_types import RetrievalTask, Task


@dataclass(frozen=True)
class Unit:
    """`init`: "pretrained" or "untrained" (the checkpoint's architecture), or "baselines"."""

    checkpoint: str
    init: str
    task: str


@dataclass
class Context:
    """What every row of a unit needs: the journal, the rows already done, the config."""

    unit: Unit
    task: Task
    cfg: EvalConfig
    seeds: int
    journal: Journal
    done: dict[str, dict]
    log: Callable[[str], None] = print
    rows: list[dict] = field(default_factory=list)

    def row(self, model: str, protocol: str, seed: int, hp_name: str, hp, run: Callable[[], dict]) -> dict:
        """The journaled row of this identity, or run it, journal it and return it."""
        identity = {"checkpoint": self.unit.checkpoint, "task": self.task.name, "model": model}
        identity |= {"protocol": protocol, "seed": seed, "hp_name": hp_name, "hp": hp}
        key = row_key(identity, self.journal.config_hash, self.task.fingerprint())
        if key in self.done:
            return {**self.done[key], "reused": True}
        row = {**identity, **run(), "reused": False}
        self.journal.write(key, row)
        self.log(describe(row))
        return row

    def tuned(self, model: str, protocol: str, hp_name: str, values: list, run: Callable[[object, int], dict]) -> None:
        """Grid on seed 0, lowest validation loss kept for seeds 1.. (every row marked `selected` or not)."""
        first = [self.row(model, protocol, 0, hp_name, v, lambda v=v: run(v, 0)) for v in values]
        best = values[int(np.nanargmin([r["val_loss"] for r in first]))]
        rest = [self.row(model, protocol, s, hp_name, best, lambda s=s: run(best, s)) for s in range(1, self.seeds)]
        self.rows += [{**r, "selected": r["hp"] == best} for r in first + rest]


def describe(row: dict) -> str:
    names = [m for m in ("accuracy", "mcc", "recall_at_1") if m in row and row[m] == row[m]][:2]
    scores = " ".join(f"{m} {row[m]:.3f}" for m in names)
    hp = f" {row['hp_name']}={row['hp']:g}" if row.get("hp_name") else ""
    where = f" ({row['checkpoint'].rstrip('/').rsplit('/', 1)[-1]})" if row["checkpoint"] else ""
    who = f"{row['task']} {row['model']} {row['protocol']}{hp} seed {row['seed']}{where}"
    return f"{who}: {scores} ({row['seconds']:.0f} s)"


def _classification_backbone(ctx: Context, model, tokenizer, protocols: tuple[str, ...]) -> None:
    task, cfg, init = ctx.task, ctx.cfg, ctx.unit.init

    def backbone(seed: int):
        return copy.deepcopy(model) if init == "pretrained" else bb.fresh_copy(model, seed)

    if "finetune" in protocols:
        ctx.tuned(
            init, "finetune", "lr", cfg.finetune_lrs, lambda lr, s: finetune(task, backbone(s), tokenizer, cfg, lr, s)
        )
    if "probe" in protocols:
        feats: dict[int, Features] = {}

        def features(seed: int) -> Features:
            key = 0 if init == "pretrained" else seed  # pretrained features do not depend on the seed
            if key not in feats:
                feats[key] = Features(model if init == "pretrained" else backbone(seed).eval(), tokenizer, task, cfg)
            return feats[key]

        ctx.tuned(init, "probe", "lr", cfg.probe_lrs, lambda lr, s: probe(features(s), cfg, lr, s))


def _retrieval_backbone(ctx: Context, model, tokenizer) -> None:
    embedded: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def pairs(seed: int):
        key = 0 if ctx.unit.init == "pretrained" else seed
        if key not in embedded:
            net = model if ctx.unit.init == "pretrained" else bb.fresh_copy(model, seed).eval()
            embedded[key] = embed_pairs(ctx.task, net, tokenizer, ctx.cfg.batch_size)
        return embedded[key]

    for seed in range(ctx.seeds):
        for control in CONTROLS:
            run = lambda s=seed, c=control: retrieve(*pairs(s), s, c)  # noqa: E731
            ctx.rows.append({**ctx.row(ctx.unit.init, control, seed, "", None, run), "selected": True})


def _baselines(ctx: Context) -> None:
    task, cfg = ctx.task, ctx.cfg
    if isinstance(task, RetrievalTask):
        for seed in range(ctx.seeds):
            row = ctx.row("composition", "baseline", seed, "", None, lambda s=seed: composition(task, s))
            ctx.rows.append({**row, "selected": True})
        return
    for name, fn in BASELINES.items():
        hp_name, values = grid(name, cfg)
        ctx.tuned(name, "baseline", hp_name, values, lambda hp, s, fn=fn: fn(task, cfg, s, hp))


def run_unit(
    unit: Unit,
    task: Task,
    cfg: EvalConfig,
    protocols: tuple[str, ...],
    seeds: int,
    journal: Journal,
    done: dict[str, dict],
    threads: int = 1,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Every row of one unit (journaled as each finishes)."""
    torch.set_num_threads(threads)
    ctx = Context(unit, task, cfg, seeds, journal, done, log)
    if unit.init == "baselines":
        _baselines(ctx)
        return ctx.rows
    model, tokenizer = bb.load(unit.checkpoint)
    if isinstance(task, RetrievalTask):
        _retrieval_backbone(ctx, model, tokenizer)
    else:
        _classification_backbone(ctx, model, tokenizer, protocols)
    return ctx.rows
