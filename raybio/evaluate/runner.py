"""Fan (checkpoint x task x model x protocol x seed) out as Ray tasks; collect, summarise, write.

`evaluate` is what `raybio evaluate` runs: one Ray task per run (one CPU, one torch thread),
a line printed per finished run, then `downstream.csv` / `downstream.parquet` (one row per
run with its config) and a summary (mean, min–max over seeds, bootstrap 95 % CI over the
test set) with the baselines beside the checkpoint's own rows.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from raybio.data import storage
from raybio.data.validate import InputError
from raybio.evaluate import backbone as bb
from raybio.evaluate.baselines import BASELINES
from raybio.evaluate.leakage import leakage
from raybio.evaluate.metrics import CLASSIFICATION, RETRIEVAL, bootstrap_ci
from raybio.evaluate.protocols import EvalConfig, run_backbone
from raybio.evaluate.retrieval import CONTROLS, embed_pairs, retrieve
from raybio.evaluate.tasks import ClassificationTask, RetrievalTask, load_task

BUNDLED_TASKS = ("gb_nontata_promoters", "gb_enhancers_cohn", "species", "protein_family", "gene_protein_retrieval")


@dataclass(frozen=True)
class RunSpec:
    """One downstream run. `model`: pretrained | scratch | kmer_logreg | gb_cnn | retrieval (all controls)."""

    checkpoint: str
    task: str
    model: str
    protocol: str
    seed: int


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


def plan(checkpoints: list[str], tasks: list[str], protocols: list[str], seeds: int, baselines: bool) -> list[RunSpec]:
    """Every run to do; baselines (k-mer, CNN) once per task, from-scratch once per checkpoint."""
    specs = []
    for task in tasks:
        if task == "gene_protein_retrieval":
            specs += [RunSpec(c, task, "retrieval", "probe", s) for c in checkpoints for s in range(seeds)]
            continue
        for seed in range(seeds):
            for ckpt in checkpoints:
                for protocol in protocols:
                    specs.append(RunSpec(ckpt, task, "pretrained", protocol, seed))
                    if baselines:
                        specs.append(RunSpec(ckpt, task, "scratch", protocol, seed))
            if baselines:
                specs += [RunSpec("", task, name, "baseline", seed) for name in BASELINES]
    return specs


def execute(spec: RunSpec, cfg: EvalConfig, threads: int = 1) -> list[dict]:
    """Do one run in this process; rows of metrics (classification rows keep their test probabilities)."""
    import torch

    torch.set_num_threads(threads)
    task = load_task(spec.task)
    base = {**asdict(spec), "task": task.name, "task_source": spec.task, "pooling": cfg.pooling}
    if spec.model in BASELINES:
        return [{**base, **BASELINES[spec.model](task, cfg, spec.seed)}]
    model, tokenizer = bb.load(spec.checkpoint)
    if isinstance(task, RetrievalTask):
        genes, proteins = embed_pairs(task, model, tokenizer, cfg.batch_size)
        return [{**base, "model": control, **retrieve(genes, proteins, spec.seed, control)} for control in CONTROLS]
    if spec.model == "scratch":
        model = bb.fresh_copy(model, spec.seed)
    run_cfg = cfg.model_copy(update={"protocol": spec.protocol})
    return [{**base, **run_backbone(task, model, tokenizer, run_cfg, spec.seed)}]


def _describe(row: dict) -> str:
    names = [m for m in (*CLASSIFICATION, *RETRIEVAL) if m in row and not pd.isna(row[m])][:3]
    scores = " ".join(f"{m} {row[m]:.3f}" for m in names)
    return f"{row['task']} {row['model']} {row['protocol']} seed {row['seed']}: {scores} ({row['seconds']:.0f} s)"


def run_all(specs: list[RunSpec], cfg: EvalConfig, use_ray: bool = True, log=print) -> list[dict]:
    """Run every spec (as Ray tasks, or in this process); prints a line as each finishes."""
    rows: list[dict] = []
    if not use_ray:
        for i, spec in enumerate(specs, 1):
            for row in execute(spec, cfg):
                rows.append(row)
                log(f"[{i}/{len(specs)}] {_describe(row)}")
        return rows
    import ray

    from raybio.cluster import init_ray

    init_ray()
    remote = ray.remote(num_cpus=1)(execute)
    pending = {remote.remote(spec, cfg): spec for spec in specs}
    done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        spec = pending.pop(ready[0])
        try:
            out = ray.get(ready[0])
        except ray.exceptions.RayTaskError as err:
            if isinstance(err.cause, InputError):
                raise err.cause from None
            raise
        done += 1
        for row in out:
            rows.append(row)
            log(f"[{done}/{len(specs)}] {_describe(row)}")
    return rows


def summarize(runs: pd.DataFrame, n_resamples: int = 200) -> pd.DataFrame:
    """Per (checkpoint, task, model, protocol): seeds, and per metric mean, min, max, 95 % CI.

    Classification CIs bootstrap the test set with every seed's predictions averaged per
    resample; retrieval draws a different test set per seed, so it reports min–max only.
    """
    out = []
    keys = ["checkpoint", "task", "task_source", "model", "protocol"]
    for key, group in runs.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, key, strict=True)) | {"seeds": len(group)}
        task_is_retrieval = "recall_at_1" in group and group["recall_at_1"].notna().all()
        ci = {} if task_is_retrieval else bootstrap_ci(load_task_labels(key[2]), list(group["prob"]), n_resamples)
        for m in RETRIEVAL if task_is_retrieval else CLASSIFICATION:
            if m not in group or group[m].isna().all():
                continue
            row |= {f"{m}": group[m].mean(), f"{m}_min": group[m].min(), f"{m}_max": group[m].max()}
            if m in ci:
                row[f"{m}_ci_low"], row[f"{m}_ci_high"] = ci[m]
        out.append(row)
    return pd.DataFrame(out)


_LABELS: dict[str, np.ndarray] = {}


def load_task_labels(name: str) -> np.ndarray:
    if name not in _LABELS:
        _LABELS[name] = load_task(name).test.labels
    return _LABELS[name]


def leakage_table(tasks: list[str]) -> pd.DataFrame:
    """Exact and near-duplicate (k-mer Jaccard >= 0.9) test-vs-train counts per classification task."""
    rows = []
    for name in tasks:
        task = load_task(name)
        if isinstance(task, ClassificationTask):
            k = 6 if task.modality == "dna" else 3
            leak = leakage(task.train.sequences, task.test.sequences, k=k)
            rows.append({"task": task.name, **asdict(leak), "note": task.note})
    return pd.DataFrame(rows)


def incompatible(checkpoints: list[str], tasks: list[str], log=print) -> set[tuple[str, str]]:
    """(checkpoint, task) pairs whose tokenizer cannot encode the task's modality; each is logged, not run."""
    skip = set()
    for ckpt in checkpoints:
        _, tokenizer = bb.load(ckpt)
        for name in tasks:
            task = load_task(name)
            needs = {"dna", "protein"} if isinstance(task, RetrievalTask) else {task.modality}
            if not needs <= set(tokenizer.modalities):
                skip.add((ckpt, name))
                log(
                    f"skipped {task.name} for {ckpt}: its {tokenizer.kind} tokenizer encodes "
                    f"{'/'.join(tokenizer.modalities)} only; the task needs {'+'.join(sorted(needs))}"
                )
    return skip


def write_table(df: pd.DataFrame, out_dir: str, stem: str) -> None:
    storage.write_bytes_atomic(storage.join(out_dir, f"{stem}.csv"), df.to_csv(index=False).encode())
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    storage.write_bytes_atomic(storage.join(out_dir, f"{stem}.parquet"), buf.getvalue())


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
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(runs, summary, leakage) tables; written as downstream[_summary|_leakage].{csv,parquet} under `out_dir`."""
    t0 = time.perf_counter()
    for name in tasks:
        load_task(name)  # bad task input fails here, before any run starts
    leaks = leakage_table(tasks)
    for r in leaks.itertuples():
        log(f"{r.task}: {r.exact} exact and {r.near} near-duplicate test sequences of {r.n_test} also in train")
        if r.near:
            log(f"warning: {r.task}: {r.near} test sequences have k-mer Jaccard >= {r.threshold} to a train one")
    skip = incompatible(checkpoints, tasks, log)
    specs = [
        s for s in plan(checkpoints, tasks, list(protocols), seeds, baselines) if (s.checkpoint, s.task) not in skip
    ]
    rows = run_all(specs, cfg, use_ray, log)
    runs = pd.DataFrame(rows)
    summary = summarize(runs, cfg.bootstrap)
    runs = runs.drop(columns=["prob"], errors="ignore")
    for key, val in cfg.model_dump().items():
        if key not in runs:
            runs[key] = val
    if out_dir:
        for df, stem in ((runs, "downstream"), (summary, "downstream_summary"), (leaks, "downstream_leakage")):
            write_table(df, out_dir, stem)
    log(f"{len(runs)} runs in {time.perf_counter() - t0:.0f} s")
    return runs, summary, leaks


def format_summary(summary: pd.DataFrame) -> str:
    """A fixed-width table: per task, every model's headline metric as mean [CI] (min–max)."""
    lines = []
    for task, group in summary.groupby("task", sort=False):
        metric = "recall_at_1" if "recall_at_1" in group and group["recall_at_1"].notna().any() else "accuracy"
        lines.append(f"{task} ({metric}, mean [95% CI] (min-max over seeds))")
        for r in group.itertuples():
            ci = ""
            if f"{metric}_ci_low" in group and not pd.isna(getattr(r, f"{metric}_ci_low", np.nan)):
                ci = f" [{getattr(r, f'{metric}_ci_low'):.3f}, {getattr(r, f'{metric}_ci_high'):.3f}]"
            spread = f" ({getattr(r, f'{metric}_min'):.3f}-{getattr(r, f'{metric}_max'):.3f})"
            who = f"{r.model} {r.protocol}" + (f" {Path(r.checkpoint).name}" if r.checkpoint else "")
            lines.append(f"  {who:<40} {getattr(r, metric):.3f}{ci}{spread}  n={r.seeds}")
    return "\n".join(lines)


def evaluate_for_trial(
    checkpoint: str, tasks: list[str], seeds: int = 3, cfg: EvalConfig | None = None
) -> dict[str, float]:
    """Flat `downstream/<task>/<metric>` (+ `_ci_low` / `_ci_high`) of one checkpoint, run in this process.

    What a sweep trial reports after training (`--eval-tasks`): the pretrained model only,
    no baselines, serially (the trial already holds its CPUs).
    """
    cfg = cfg or EvalConfig()
    _, summary, _ = evaluate([checkpoint], tasks, cfg, seeds, baselines=False, use_ray=False, log=lambda _: None)
    out = {}
    for r in summary.to_dict("records"):
        if r["model"] not in ("pretrained", "projector"):
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
