"""How fine-tuning reshapes MoE routing (OmniGene-4): per-layer divergence between tasks' routing.

Before: every task's test sequences go through the pretrained backbone. After: each task's
sequences go through the backbone fine-tuned on that task. For both, the per-layer mean
pairwise Jensen–Shannon divergence between the tasks' expert-usage distributions
(`raybio.models.moe.recorder`) says how task-specific routing is.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import torch

from raybio.data import storage
from raybio.evaluate import backbone as bb
from raybio.evaluate.protocols import EvalConfig, finetune
from raybio.evaluate.task_types import ClassificationTask, Task
from raybio.models.blocks import has_experts
from raybio.models.config import ModelConfig
from raybio.models.moe.recorder import RouterRecorder, js_by_layer
from raybio.models.pretrained import CONFIG_FILE


@torch.no_grad()
def task_usage(model, tokenizer, task: ClassificationTask, n: int = 128, batch_size: int = 16) -> dict[int, np.ndarray]:
    """Per MoE layer: expert-slot counts over the first `n` test sequences of `task`."""
    ids = bb.encode(tokenizer, task.test.sequences[:n], task.modality, model.cfg.max_seq_len, task.name).ids
    model.eval()
    with RouterRecorder(model) as rec:
        for idx in bb.length_batches(np.array([len(x) for x in ids]), batch_size, None):
            ids_BL, mask_BL = bb.pad(ids, idx, tokenizer.pad_id)
            rec.set_batch(ids_BL, [task.name] * len(idx), keep_BL=mask_BL)
            bb.token_states(model, ids_BL, mask_BL)
    return {layer: per_tag[task.name] for layer, per_tag in rec.usage().items()}


def read_model_config(checkpoint: str) -> ModelConfig:
    """A checkpoint's model config from its config.json (no weights read)."""
    meta = json.loads(storage.read_bytes(storage.join(checkpoint, CONFIG_FILE)))
    return ModelConfig.model_validate(meta["experiment"]["model"])


def routing_lr(cfg: EvalConfig) -> float:
    """The fine-tune learning rate used here: the middle of the grid (one fine-tune per task, not a grid)."""
    return sorted(cfg.finetune_lrs)[len(cfg.finetune_lrs) // 2]


def routing_change(checkpoint: str, tasks: list[Task], cfg: EvalConfig, seed: int = 0) -> pd.DataFrame:
    """Rows (layer, js_before, js_after): mean pairwise JS between tasks, before vs after fine-tuning
    (each task fine-tuned once, seed `seed`, at `routing_lr`)."""
    loaded = [t for t in tasks if isinstance(t, ClassificationTask)]
    model, tokenizer = bb.load(checkpoint)
    before = {t.name: task_usage(model, tokenizer, t) for t in loaded}
    after = {}
    for task in loaded:
        tuned = copy.deepcopy(model)
        finetune(task, tuned, tokenizer, cfg, routing_lr(cfg), seed)
        after[task.name] = task_usage(tuned, tokenizer, task)

    def by_layer(usage: dict[str, dict[int, np.ndarray]]) -> dict[int, float]:
        layers = next(iter(usage.values()))
        return js_by_layer({layer: {name: u[layer] for name, u in usage.items()} for layer in layers})

    js_before, js_after = by_layer(before), by_layer(after)
    return pd.DataFrame(
        [{"layer": layer, "js_before": js_before[layer], "js_after": js_after[layer]} for layer in sorted(js_before)]
    )


def write_routing_change(checkpoints: list[str], tasks: list[Task], cfg: EvalConfig, out: str) -> pd.DataFrame | None:
    """routing_change.{csv,parquet}: one row per (checkpoint, MoE layer); dense checkpoints are skipped, said so.

    Returns the table (None when no checkpoint has MoE layers)."""
    frames = []
    for ckpt in checkpoints:
        if not has_experts(read_model_config(ckpt).pattern):
            print(f"routing change: {ckpt} has no MoE layers, skipped")
            continue
        frames.append(routing_change(ckpt, tasks, cfg).assign(checkpoint=ckpt))
    if frames:
        df = pd.concat(frames, ignore_index=True)
        storage.write_table(df, out, "routing_change")
        print(df.to_string(index=False))
        return df
    return None
