"""Router anatomy of a finished sweep: routing per tag at init and after training, per trial.

Inputs are the corpus windows tagged by modality (when the corpus has several) or else by
source record (e.g. E. coli vs phage lambda). The sweep hands over each trial's experiment
and final checkpoint (`raybio.tune.runner.TrialRun`); the untrained model is rebuilt from the
training seed, so "init" is the exact starting point of the trained checkpoint.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from raybio.config import ExperimentConfig
from raybio.data import storage
from raybio.data.manifest import Manifest, load_manifest
from raybio.models.blocks import has_experts
from raybio.models.model import BioLM
from raybio.models.moe.recorder import RouterRecorder, js_by_layer
from raybio.models.pretrained import load_pretrained
from raybio.tune.record import TrialRun

WINDOWS_PER_TAG = 32
NULL_PERMUTATIONS = 50


def tagged_windows(
    shards_uri: str, manifest: Manifest, per_tag: int = WINDOWS_PER_TAG
) -> tuple[torch.Tensor, list[str]]:
    """Up to `per_tag` windows for each tag, from validation then training shards."""
    frames = []
    for split in ("val", "train"):
        for uri in manifest.split_uris(shards_uri, split):
            fs, path = storage.filesystem(uri)
            with fs.open_input_file(path) as f:
                frames.append(pq.read_table(f).to_pandas())
    df = pd.concat(frames, ignore_index=True)
    tag_col = "modality" if "modality" in df and df["modality"].nunique() > 1 else "record_id"
    picked = df.groupby(tag_col, sort=True).head(per_tag)
    tokens = torch.from_numpy(np.stack(picked["tokens"].to_numpy()).astype(np.int64))
    return tokens, picked[tag_col].astype(str).tolist()


def trial_anatomy(model: torch.nn.Module, tokens: torch.Tensor, tags: list[str], vocab: list[str]) -> dict:
    """Usage per layer and tag, JS divergence per layer beside its permutation null, and expert preferences.

    Routing is recorded per window, so any labelling of the windows can be scored without another
    forward pass: the null is the same JS with the tags randomly permuted over the windows
    (NULL_PERMUTATIONS times) — the divergence chance and token composition alone give."""
    model.eval()
    windows = [str(i) for i in range(len(tokens))]
    with RouterRecorder(model) as rec, torch.no_grad():
        for i in range(0, len(tokens), 16):
            rec.set_batch(tokens[i : i + 16], windows[i : i + 16])
            model(tokens[i : i + 16])
    per_window = rec.usage()
    tags_W = np.asarray(tags)
    usage = _usage_by_tag(per_window, tags_W)
    js = js_by_layer(usage)
    rng = np.random.default_rng(0)
    null = [js_by_layer(_usage_by_tag(per_window, rng.permutation(tags_W))) for _ in range(NULL_PERMUTATIONS)]
    null_js = {layer: float(np.mean([n[layer] for n in null])) for layer in js}
    # One-sided permutation p-value per layer: how often relabelled windows diverge at least as much.
    p_perm = {
        layer: (1 + sum(n[layer] >= js[layer] for n in null)) / (1 + len(null)) if js[layer] == js[layer] else np.nan
        for layer in js
    }
    return {
        "usage": {str(layer): {t: c.tolist() for t, c in per.items()} for layer, per in usage.items()},
        "js_by_layer": {str(k): v for k, v in js.items()},
        # NaN when the inputs carry a single tag: there is nothing to compare.
        "js_mean": float(np.mean(list(js.values()))) if js else float("nan"),
        "divergence": len(np.unique(tags_W)) > 1,  # ≥ 2 tags: there are routing distributions to compare
        # An expert's share of the layer's routed slots × experts: 1 everywhere when perfectly balanced.
        "expert_load": [(share * len(share)).tolist() for share in usage_heatmap(usage)],
        "null_js_by_layer": {str(k): v for k, v in null_js.items()},
        "null_js_mean": float(np.mean(list(null_js.values()))) if null_js else float("nan"),
        "js_p_perm_by_layer": {str(k): float(v) for k, v in p_perm.items()},
        "dead_experts_by_layer": {str(layer): int((sum(per.values()) == 0).sum()) for layer, per in usage.items()},
        "preferences": {str(k): _tag_mix(v, tags_W) for k, v in rec.expert_preferences(vocab).items()},
    }


def _usage_by_tag(per_window: dict[int, dict[str, np.ndarray]], tags_W: np.ndarray) -> dict[int, dict[str, np.ndarray]]:
    """Per layer, the per-window expert counts summed over the windows of each tag."""
    out = {}
    for layer, counts in per_window.items():
        stacked = np.stack([counts[str(w)] for w in range(len(tags_W))])  # every window routes in every layer
        out[layer] = {t: stacked[tags_W == t].sum(0) for t in np.unique(tags_W)}
    return out


def _tag_mix(experts: list[dict], tags_W: np.ndarray) -> list[dict]:
    """Expert preferences with their per-window mix folded into per-tag counts."""
    for row in experts:
        mix: dict[str, int] = {}
        for window, n in row["tags"].items():
            mix[str(tags_W[int(window)])] = mix.get(str(tags_W[int(window)]), 0) + n
        row["tags"] = mix
    return experts


def checkpoint_anatomy(experiment: ExperimentConfig, checkpoint_uri: str, shards_uri: str) -> dict:
    """Anatomy of a trained MoE checkpoint beside its exact untrained start (rebuilt from the training seed)."""
    manifest = load_manifest(shards_uri)
    trained_model = load_pretrained(checkpoint_uri)
    tokens, tags = tagged_windows(shards_uri, manifest)
    vocab = trained_model.tokenizer.vocab
    torch.manual_seed(experiment.train.seed)  # the training loop's init
    init = trial_anatomy(BioLM(experiment.model, manifest.tokenizer.vocab_size), tokens, tags, vocab)
    trained = trial_anatomy(trained_model.model, tokens, tags, vocab)
    trained["init_js_by_layer"] = init["js_by_layer"]
    trained["init_null_js_by_layer"] = init["null_js_by_layer"]
    trained["init_js_mean"] = init["js_mean"]
    trained["js_change"] = trained["js_mean"] - init["js_mean"]
    trained["tags"] = sorted(set(tags))
    return trained


def sweep_anatomy(trials: list[TrialRun], tb_dir: str) -> dict[str, dict]:
    """Anatomy of every finished MoE trial (keyed by trial id), with its usage heatmap in TensorBoard."""
    from torch.utils.tensorboard import SummaryWriter

    out = {}
    for trial in trials:
        if not (trial.ok and trial.checkpoint_uri and has_experts(trial.experiment.model.pattern)):
            continue
        trained = checkpoint_anatomy(trial.experiment, trial.checkpoint_uri, trial.shards_uri)
        trained["params"] = trial.params
        out[trial.trial_id] = trained
        if tb_dir:
            with SummaryWriter(f"{tb_dir}/trials/{trial.label}") as w:
                write_anatomy_tensorboard(w, trained)
    return out


def write_anatomy_tensorboard(writer, anatomy: dict) -> None:
    """The usage heatmap, and the per-layer JS divergence where there is one; never a NaN scalar
    (a one-tag corpus has no divergence: the text summary says so instead of an empty chart)."""
    # Load relative to uniform, halved into [0, 1] for an image: mid-grey (0.5) is a balanced expert.
    load = np.clip(np.asarray(anatomy["expert_load"]) / 2, 0, 1)
    writer.add_image("anatomy/expert_load_over_uniform_half", load, 0, dataformats="HW")
    if not anatomy["divergence"]:
        writer.add_text(
            "anatomy/js_divergence",
            "No routing divergence: every input of this corpus carries one tag (modality or record), so there is "
            "no pair of routing distributions to compare. Use a multi-record or multi-omic corpus.",
        )
        return
    for layer, js in anatomy["js_by_layer"].items():
        writer.add_scalar("anatomy/js_divergence_by_layer", js, int(layer))
        writer.add_scalar("anatomy/init_js_divergence_by_layer", anatomy["init_js_by_layer"][layer], int(layer))


def anatomy_table(anatomy: dict) -> pd.DataFrame:
    """Per layer: JS divergence between tags at init and trained, the trained model's permutation null
    and p-value, and the experts no window of the sample used."""
    return pd.DataFrame(
        [
            {
                "layer": int(layer),
                "js_init": anatomy["init_js_by_layer"][layer],
                "js_trained": js,
                "js_trained_tags_permuted": anatomy["null_js_by_layer"][layer],
                "p_permutation": anatomy["js_p_perm_by_layer"][layer],
                "unused_experts": anatomy["dead_experts_by_layer"][layer],
            }
            for layer, js in sorted(anatomy["js_by_layer"].items(), key=lambda kv: int(kv[0]))
        ]
    )


def usage_heatmap(usage: dict) -> np.ndarray:
    """Layer × expert share of each layer's routed slots (all tags together; rows sum to 1)."""
    rows = [np.sum(list(per.values()), axis=0) for _, per in sorted(usage.items(), key=lambda kv: int(kv[0]))]
    return np.array([r / max(r.sum(), 1) for r in rows], dtype=np.float32)
