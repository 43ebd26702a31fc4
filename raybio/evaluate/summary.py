"""From rows to answers: per-model scores with hierarchical-bootstrap CIs, paired tests, per-class tables.

Every classification score is computed on test *slices*: `clean` (the headline: test rows that
are neither near duplicates of a train row nor in any evaluated checkpoint's pretraining
corpus), and, when they exist, `near_duplicate` and `seen` scored apart. Comparisons between
models are paired (same test rows, seeds paired by number): a paired bootstrap of the accuracy
difference with its 95 % interval and p-value, McNemar's exact test per seed (median p), and
Holm's adjustment over every comparison of the evaluation (statsmodels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from raybio.evaluate.metrics import (
    CLASSIFICATION,
    RETRIEVAL,
    Resampler,
    classification_metrics,
    mcnemar_p,
    paired_difference,
    percentile_ci,
)
from raybio.evaluate.task_types import ClassificationTask, Task

BASELINE_RIVALS = ("kmer_logreg", "gb_cnn")


@dataclass
class Summary:
    scores: pd.DataFrame  # one row per (checkpoint, task, model, protocol, slice)
    comparisons: pd.DataFrame  # paired tests
    per_class: pd.DataFrame  # precision / recall / F1 per class (clean slice, seeds pooled)
    confusion: pd.DataFrame  # mean confusion counts over seeds (clean slice)


def slices(near_duplicate: np.ndarray, seen: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean test-row masks: the headline first (`clean`, or `all` when no row is clean), then
    near_duplicate / seen when non-empty."""
    clean = ~near_duplicate & ~seen
    out = {"clean": clean} if clean.any() else {"all": np.ones_like(clean)}
    if near_duplicate.any():
        out["near_duplicate"] = near_duplicate
    if seen.any():
        out["seen"] = seen
    return out


def _groups(runs: list[dict], task: str):
    mine = [r for r in runs if r["task"] == task and r.get("selected", True)]
    keys = dict.fromkeys((r["checkpoint"], r["model"], r["protocol"]) for r in mine)
    for key in keys:
        rows = sorted((r for r in mine if (r["checkpoint"], r["model"], r["protocol"]) == key), key=lambda r: r["seed"])
        yield key, rows


def _score_rows(task: ClassificationTask, runs: list[dict], masks: dict[str, np.ndarray], res: Resampler) -> list:
    y, out = task.test.labels, []
    for (ckpt, model, protocol), rows in _groups(runs, task.name):
        probs = [np.asarray(r["prob"]) for r in rows]
        for name, keep in masks.items():
            if not keep.any():
                continue
            per_seed = pd.DataFrame([classification_metrics(y[keep], p[keep]) for p in probs])
            boot = res.statistic(y, probs, keep)
            row = {"checkpoint": ckpt, "task": task.name, "model": model, "protocol": protocol, "slice": name}
            row |= {"seeds": len(rows), "n_test": int(keep.sum()), "hp_name": rows[0]["hp_name"], "hp": rows[0]["hp"]}
            for m in CLASSIFICATION:
                lo, hi = percentile_ci(boot[m])
                row |= {m: per_seed[m].mean(), f"{m}_min": per_seed[m].min(), f"{m}_max": per_seed[m].max()}
                row |= {f"{m}_ci_low": lo, f"{m}_ci_high": hi}
            out.append(row)
    return out


def _retrieval_rows(task: Task, runs: list[dict]) -> list:
    out = []
    for (ckpt, model, protocol), rows in _groups(runs, task.name):
        row = {"checkpoint": ckpt, "task": task.name, "model": model, "protocol": protocol, "slice": "all"}
        row |= {"seeds": len(rows), "n_test": rows[0]["n_test"], "hp_name": "", "hp": None}
        for m in RETRIEVAL:
            vals = np.array([r[m] for r in rows])
            row |= {m: vals.mean(), f"{m}_min": vals.min(), f"{m}_max": vals.max()}
        out.append(row)
    return out


def _pairs(scores: pd.DataFrame) -> list[tuple[tuple, tuple]]:
    """(A, B) keys (checkpoint, model, protocol) to compare on one task's clean slice."""
    clean = scores[scores["slice"].isin(["clean", "all"])]
    have = {(r.checkpoint, r.model, r.protocol): r.accuracy for r in clean.itertuples()}
    bases = {k: v for k, v in have.items() if k[1] in BASELINE_RIVALS}
    best = max(bases, key=bases.get) if bases else None
    pairs = []
    for ckpt in dict.fromkeys(k[0] for k in have if k[0]):
        for protocol in ("finetune", "probe"):
            a = (ckpt, "pretrained", protocol)
            if a not in have:
                continue
            pairs += [(a, b) for b in [(ckpt, "untrained", protocol), best, ("", "majority", "baseline")] if b in have]
    return pairs


def _comparisons(task: ClassificationTask, runs: list[dict], keep: np.ndarray, scores, res: Resampler) -> list:
    y = task.test.labels
    probs = {key: [np.asarray(r["prob"]) for r in rows] for key, rows in _groups(runs, task.name)}
    out = []
    for a, b in _pairs(scores[scores["task"] == task.name]):
        diff = paired_difference(res, y, probs[a], probs[b], "accuracy", keep)
        n = min(len(probs[a]), len(probs[b]))
        pairs = zip(probs[a][:n], probs[b][:n], strict=True)
        mcn = [mcnemar_p(y[keep], pa[keep].argmax(1), pb[keep].argmax(1)) for pa, pb in pairs]
        out.append(
            {"task": task.name, "checkpoint": a[0], "a": f"{a[1]} {a[2]}", "b": label(b[1], b[2]), "metric": "accuracy"}
            | {"difference": diff.estimate, "ci_low": diff.ci_low, "ci_high": diff.ci_high, "p_bootstrap": diff.p}
            | {"p_mcnemar_median": float(np.median(mcn)), "seeds": n, "n_test": int(keep.sum())}
        )
    return out


def label(model: str, protocol: str) -> str:
    return model if protocol == "baseline" else f"{model} {protocol}"


def verdict(row: pd.Series, n_resamples: int, n_comparisons: int) -> str:
    """The comparison in words, from the Holm-adjusted p-value and the difference's interval.

    A bootstrap p of 0 means "below the resolution 2 / resamples"; Holm multiplies it by at most
    the number of comparisons, so that product is the bound shown.
    """
    p = row["p_holm"]
    bound = min(1.0, 2 / n_resamples * n_comparisons)
    p_text = f"Holm p < {bound:.2g}" if row["p_bootstrap"] == 0 else f"Holm p = {p:.2g}"
    delta = f"Δ accuracy {row['difference']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}], {p_text}"
    significant = (bound if row["p_bootstrap"] == 0 else p) < 0.05 and (row["ci_low"] > 0 or row["ci_high"] < 0)
    if row["b"].startswith("untrained"):
        if not significant:
            return f"no detectable benefit of pretraining ({delta})"
        return f"pretraining {'helps' if row['difference'] > 0 else 'hurts'} ({delta})"
    if not significant:
        return f"no detectable difference from {row['b']} ({delta})"
    return f"{'beats' if row['difference'] > 0 else 'trails'} {row['b']} ({delta})"


def _per_class(task: ClassificationTask, runs: list[dict], keep: np.ndarray) -> tuple[list, list]:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y, C = task.test.labels[keep], len(task.classes)
    per_class, confusion = [], []
    for (ckpt, model, protocol), rows in _groups(runs, task.name):
        preds = [np.asarray(r["prob"])[keep].argmax(1) for r in rows]
        y_all, p_all = np.tile(y, len(preds)), np.concatenate(preds)
        prec, rec, f1, sup = precision_recall_fscore_support(y_all, p_all, labels=np.arange(C), zero_division=0)
        base = {"task": task.name, "checkpoint": ckpt, "model": label(model, protocol)}
        for c in range(C):
            per_class.append(base | {"class": task.classes[c], "precision": prec[c], "recall": rec[c], "f1": f1[c]})
            per_class[-1]["support"] = int(sup[c] // len(preds))
        cm = confusion_matrix(y_all, p_all, labels=np.arange(C)) / len(preds)
        for c in range(C):
            confusion.append(base | {"true": task.classes[c], **dict(zip(task.classes, cm[c].round(1), strict=True))})
    return per_class, confusion


def summarize(
    runs: list[dict], tasks: dict[str, Task], masks: dict[str, dict[str, np.ndarray]], n_resamples: int = 1000
) -> Summary:
    """Scores, paired comparisons (Holm-adjusted), per-class metrics and confusion of every task."""
    from statsmodels.stats.multitest import multipletests

    scores, comparisons, per_class, confusion = [], [], [], []
    for name, task in tasks.items():
        if not any(r["task"] == task.name for r in runs):
            continue
        if not isinstance(task, ClassificationTask):
            scores += _retrieval_rows(task, runs)
            continue
        seeds = max(r["seed"] for r in runs if r["task"] == task.name) + 1
        res = Resampler.draw(seeds, len(task.test), n_resamples)
        scores += _score_rows(task, runs, masks[name], res)
        table = pd.DataFrame(scores)
        headline = next(iter(masks[name].values()))
        comparisons += _comparisons(task, runs, headline, table, res)
        pc, cm = _per_class(task, runs, headline)
        per_class, confusion = per_class + pc, confusion + cm
    comp = pd.DataFrame(comparisons)
    if len(comp):
        comp["p_holm"] = multipletests(comp["p_bootstrap"], method="holm")[1]
        comp["verdict"] = [verdict(r, n_resamples, len(comp)) for _, r in comp.iterrows()]
    return Summary(pd.DataFrame(scores), comp, pd.DataFrame(per_class), pd.DataFrame(confusion))
