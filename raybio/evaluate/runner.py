"""Evaluate checkpoints on downstream tasks: load each task once, fan (model x task) units out on Ray.

`evaluate` is what `raybio evaluate` runs:

1. each checkpoint's pretraining corpus is read from its manifest (`seen.py`); the species task
   leaves those genomes out, and a task drawn from a pretraining source file is refused;
2. each task is parsed once and shared with the units (`ray.put`);
3. one Ray task per unit (`units.py`: a checkpoint's weights, pretrained or untrained, or the
   baselines, x one task) loops over protocols x seeds; every finished row is journaled in
   `<out>/journal/`, and a rerun with the same arguments reuses those rows;
4. `summary.py` scores every model on the clean test slice (near duplicates of train rows and
   rows seen in pretraining scored apart), with hierarchical-bootstrap CIs and paired tests.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from raybio.data import storage
from raybio.data.validate import InputError
from raybio.evaluate.journal import Journal
from raybio.evaluate.leakage import NEAR_K, leakage
from raybio.evaluate.metrics import CLASSIFICATION, RETRIEVAL
from raybio.evaluate.protocols import EvalConfig
from raybio.evaluate.seen import Corpus, KmerIndex, checkpoint_corpus, overlap
from raybio.evaluate.summary import Summary, slices, summarize
from raybio.evaluate.task_types import ClassificationTask, RetrievalTask, Task
from raybio.evaluate.tasks import load_task
from raybio.evaluate.units import Unit, run_unit
from raybio.models.pretrained import read_tokenizer

BUNDLED_TASKS = (
    "gb_nontata_promoters",
    "gb_enhancers_cohn",
    "species",
    "protein_family",
    "gene_protein_retrieval",
    "gene_protein_retrieval_saureus",
)


def find_checkpoints(path: str) -> list[str]:
    """A checkpoint directory itself, or every trial's final checkpoint in a sweep directory."""
    root = Path(path)
    if (root / "model.pt").is_file():
        return [str(root)]
    results = root / "results.csv"
    if results.is_file():
        paths = pd.read_csv(results).get("checkpoint_path", pd.Series(dtype=str)).dropna().astype(str)
        found = [p for p in paths if p and (Path(p) / "model.pt").is_file()]
        if found:
            return found
    # No results table (or remote paths in it): the newest checkpoint of each run under the directory.
    newest: dict[Path, Path] = {}
    for weights in sorted(root.rglob("model.pt")):
        if (weights.parent / "config.json").is_file():
            newest[weights.parent.parent] = weights.parent
    if not newest:
        raise InputError(f"{path}: no raybio checkpoint (model.pt + config.json) in or under it")
    return [str(p) for p in newest.values()]


@dataclass
class Evaluation:
    runs: pd.DataFrame  # every row (grid points included, `selected` marks the kept ones), no probabilities
    summary: Summary
    leakage: pd.DataFrame  # per task: exact / near-duplicate test rows of train
    overlap: pd.DataFrame  # per (checkpoint, task): pretraining source files in common, test rows seen, refused
    reused: int  # rows taken from the journal of an earlier run
    tasks: dict[str, Task]  # as loaded (parsed once)


def _corpora(checkpoints: list[str]) -> dict[str, Corpus]:
    return {c: checkpoint_corpus(c) for c in checkpoints}


def _overlap(checkpoints, tasks: dict[str, Task], corpora: dict[str, Corpus], cfg: EvalConfig, log) -> pd.DataFrame:
    indices: dict[frozenset, KmerIndex] = {}
    rows = []
    for ckpt in checkpoints:
        corpus = corpora[ckpt]
        index = indices.setdefault(corpus.sha256, KmerIndex.build(corpus))
        for name, task in tasks.items():
            o = overlap(task, corpus, index)
            refused = o.refused and not cfg.allow_seen
            rows.append(
                {"checkpoint": ckpt, "task": name, "corpus": corpus.origin, "same_files": ", ".join(o.same_files)}
                | {"n_test": len(o.seen_test), "seen": int(o.seen_test.sum()), "refused": refused}
                | {"reason": o.reason() if o.refused else "", "_mask": o.seen_test}
            )
            if o.refused:
                verb = "refused" if refused else "run anyway (--allow-seen)"
                log(f"{name} {verb} for {ckpt}: {o.reason()}")
            elif o.seen_test.any():
                log(f"{name}: {int(o.seen_test.sum())} test rows are in {ckpt}'s pretraining corpus; scored apart")
    return pd.DataFrame(rows)


def _leakage(tasks: dict[str, Task]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Exact / near-duplicate counts per classification task, and each task's near-duplicate test rows."""
    rows, near = [], {}
    for name, task in tasks.items():
        if not isinstance(task, ClassificationTask):
            continue
        leak = leakage(task.train.sequences, task.test.sequences, k=NEAR_K[task.modality])
        near[name] = leak.near_rows
        counts = {k: v for k, v in asdict(leak).items() if k != "near_rows"}
        rows.append({"task": task.name, **counts, "note": task.note})
    return pd.DataFrame(rows), near


def _tokenizer_skips(checkpoints: list[str], tasks: dict[str, Task], log) -> set[tuple[str, str]]:
    """(checkpoint, task) pairs whose tokenizer cannot encode the task's modality (read without the weights)."""
    skip = set()
    for ckpt in checkpoints:
        tokenizer = read_tokenizer(ckpt)
        for name, task in tasks.items():
            needs = {"dna", "protein"} if isinstance(task, RetrievalTask) else {task.modality}
            if not needs <= set(tokenizer.modalities):
                skip.add((ckpt, name))
                log(
                    f"skipped {name} for {ckpt}: its {tokenizer.kind} tokenizer encodes "
                    f"{'/'.join(tokenizer.modalities)} only; the task needs {'+'.join(sorted(needs))}"
                )
    return skip


def plan(checkpoints, tasks: dict[str, Task], skip: set, baselines: bool) -> list[Unit]:
    """Units, longest first: each checkpoint's pretrained (and untrained) backbone per task, then baselines."""
    units = []
    for name in tasks:
        runnable = [c for c in checkpoints if (c, name) not in skip]
        units += [Unit(c, "pretrained", name) for c in runnable]
        if baselines:
            units += [Unit(c, "untrained", name) for c in runnable]
        if baselines and (runnable or not checkpoints):
            units.append(Unit("", "baselines", name))
    return units


def run_units(units, tasks, cfg, protocols, seeds, journal: Journal, done: dict, use_ray: bool, log) -> list[dict]:
    """Every unit's rows: in this process, or one Ray task (one CPU, one torch thread) per unit."""
    if not use_ray:
        return [row for u in units for row in run_unit(u, tasks[u.task], cfg, protocols, seeds, journal, done, log=log)]
    import ray

    from raybio.cluster import init_ray

    init_ray(num_cpus=os.cpu_count())  # no Ray Data here: no spare CPU for reads, one unit per core
    refs = {name: ray.put(task) for name, task in tasks.items()}  # each task parsed once, shared by its units
    remote = ray.remote(num_cpus=1)(run_unit)
    pending = {remote.remote(u, refs[u.task], cfg, protocols, seeds, journal, done): u for u in units}
    rows, finished = [], 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        unit = pending.pop(ready[0])
        try:
            out = ray.get(ready[0])
        except ray.exceptions.RayTaskError as err:
            if isinstance(err.cause, InputError):
                raise err.cause from None
            raise
        finished += 1
        rows += out
        log(f"[{finished}/{len(units)} units] {unit.task} {unit.init} done: {len(out)} rows")
    return rows


def config_hash(cfg: EvalConfig) -> str:
    """What decides a row's result (not the bootstrap size nor --allow-seen)."""
    return hashlib.sha256(cfg.model_dump_json(exclude={"bootstrap", "allow_seen"}).encode()).hexdigest()[:16]


def evaluate(
    checkpoints: list[str],
    tasks: list[str],
    cfg: EvalConfig,
    seeds: int = 3,
    protocols: tuple[str, ...] = ("finetune",),
    baselines: bool = True,
    out_dir: str | None = None,
    use_ray: bool = True,
    log=print,
) -> Evaluation:
    """Every unit's rows and their summary; tables written as downstream*.{csv,parquet} under `out_dir`."""
    t0 = time.perf_counter()
    corpora = _corpora(checkpoints)
    exclude = frozenset().union(*(c.sha256 for c in corpora.values()))
    loaded = {name: load_task(name, exclude) for name in tasks}  # bad task input fails here, before any run
    leaks, near = _leakage(loaded)
    for r in leaks.itertuples():
        log(f"{r.task}: {r.exact} exact and {r.near} near-duplicate test sequences of {r.n_test} also in train")
    seen = _overlap(checkpoints, loaded, corpora, cfg, log)
    skip = _tokenizer_skips(checkpoints, loaded, log)
    skip |= {(r.checkpoint, r.task) for r in seen.itertuples() if r.refused}
    journal = Journal(out_dir, config_hash(cfg))
    done = journal.read_all()
    if done:
        log(f"journal {journal.dir}: {len(done)} finished rows from an earlier run will be reused")
    units = plan(checkpoints, loaded, skip, baselines)
    rows = run_units(units, loaded, cfg, protocols, seeds, journal, done, use_ray, log)
    reused = sum(r.pop("reused", False) for r in rows)
    masks = {}
    for name, task in loaded.items():
        if isinstance(task, ClassificationTask):
            ran = seen[(seen["task"] == name) & ~seen["refused"]] if len(seen) else seen
            seen_any = np.logical_or.reduce([*ran["_mask"], np.zeros(len(task.test), dtype=bool)])
            masks[name] = slices(near[name], seen_any)
    summary = summarize(rows, loaded, masks, cfg.bootstrap)
    runs = pd.DataFrame([{k: v for k, v in r.items() if k != "prob"} for r in rows])
    for key, val in cfg.model_dump().items():
        if key not in runs:
            runs[key] = str(val) if isinstance(val, list) else val
    result = Evaluation(runs, summary, leaks, seen.drop(columns="_mask", errors="ignore"), reused, loaded)
    if out_dir:
        write_tables(result, out_dir)
    log(f"{len(runs)} rows ({reused} reused from the journal) in {time.perf_counter() - t0:.0f} s")
    return result


def write_tables(result: Evaluation, out_dir: str) -> None:
    s = result.summary
    tables = {
        "downstream": result.runs,
        "downstream_summary": s.scores,
        "downstream_comparisons": s.comparisons,
        "downstream_per_class": s.per_class,
        "downstream_confusion": s.confusion,
        "downstream_leakage": result.leakage,
        "downstream_overlap": result.overlap,
    }
    for stem, df in tables.items():
        storage.write_table(df, out_dir, stem)


def format_summary(summary: pd.DataFrame) -> str:
    """A fixed-width table: per task, every model's headline metric (clean slice) as mean [CI] (min–max)."""
    lines = []
    for task, group in summary[summary["slice"].isin(["clean", "all"])].groupby("task", sort=False):
        metric = "recall_at_1" if "recall_at_1" in group and group["recall_at_1"].notna().any() else "accuracy"
        lines.append(f"{task} ({metric}, mean [95% CI] (min-max over seeds), {group['n_test'].iloc[0]} test rows)")
        for r in group.sort_values(metric, ascending=False).itertuples():
            ci = ""
            if not pd.isna(getattr(r, f"{metric}_ci_low", np.nan)):
                ci = f" [{getattr(r, f'{metric}_ci_low'):.3f}, {getattr(r, f'{metric}_ci_high'):.3f}]"
            spread = f" ({getattr(r, f'{metric}_min'):.3f}-{getattr(r, f'{metric}_max'):.3f})"
            who = f"{r.model} {r.protocol}" + (f" {Path(r.checkpoint).name}" if r.checkpoint else "")
            lines.append(f"  {who:<40} {getattr(r, metric):.3f}{ci}{spread}  n={r.seeds}")
    return "\n".join(lines)


def evaluate_for_trial(
    checkpoint: str, tasks: list[str], seeds: int = 3, cfg: EvalConfig | None = None
) -> dict[str, float]:
    """Flat `downstream/<task>/<metric>` (+ `_ci_low` / `_ci_high`) of one checkpoint, run in this process.

    What a sweep trial reports after training (`--eval-tasks`): the pretrained model only, one
    learning rate (3e-4) unless `cfg` says otherwise, no baselines, serially (the trial already
    holds its CPUs).
    """
    cfg = cfg or EvalConfig(finetune_lrs=[3e-4])
    result = evaluate([checkpoint], tasks, cfg, seeds, baselines=False, use_ray=False, log=lambda _: None)
    out = {}
    for r in result.summary.scores.to_dict("records"):
        if (
            r["model"] != "pretrained"
            or r["protocol"] not in ("finetune", "projector")
            or r["slice"] not in ("clean", "all")
        ):
            continue
        for m in (*CLASSIFICATION, *RETRIEVAL):
            for suffix in ("", "_ci_low", "_ci_high"):
                if f"{m}{suffix}" in r and not pd.isna(r[f"{m}{suffix}"]):
                    out[f"downstream/{r['task']}/{m}{suffix}"] = float(r[f"{m}{suffix}"])
    return out


def evaluate_train_result(result, tasks: list[str], seeds: int = 3) -> dict:
    """A sweep trial's last metrics plus the downstream scores of its final checkpoint (what it reports last)."""
    if result.checkpoint is None:
        raise InputError("--eval-tasks: the trial finished without a checkpoint to evaluate")
    with result.checkpoint.as_directory() as path:
        scores = evaluate_for_trial(path, tasks, seeds)
    # Same key Ray's TuneReportCallback uses, so results.csv still names the trial's checkpoint.
    return {**(result.metrics or {}), "checkpoint_path": result.checkpoint.path, **scores}
