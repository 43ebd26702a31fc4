"""Search axes: the names a sweep varies, and how each value maps onto the config.

A sweep names axes ("experts", "router", "granularity", or any dotted config path such
as "train.lr"); each trial's values become config overrides here, in one place, so
results tables and plots use the same names the user typed. An axis may depend on the
base experiment (granularity splits the base experts).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from raybio.config import PRESETS, ExperimentConfig, deep_merge
from raybio.models.presets import PATTERN_PRESETS

# Block patterns of the hybrid study (HyenaMoE §3), by name.
VARIANTS = PATTERN_PRESETS

# Routing rules of the routing study: `model.moe` fields per rule (docs/moe.md, "Routing options").
# Any single field is also sweepable as a dotted axis, e.g. model.moe.routed_scaling_factor.
ROUTERS = {
    "softmax": {"router": "softmax"},
    "sigmoid": {"router": "sigmoid", "route_norm": True},
    "sigmoid_unnormalized": {"router": "sigmoid", "route_norm": False},
    "aux_free": {"router": "aux_free"},
    # Qwen-MoE / OLMoE: softmax top-k without renormalisation.
    "softmax_unnormalized": {"router": "softmax", "route_norm": False},
    # Mixtral: softmax top-k renormalised, so a top-1 token gets its expert at weight 1.
    "mixtral": {"router": "softmax", "route_norm": True},
    # DeepSeek-V3 scaled to 8 experts: aux-free bias, 4 groups of 2, a token uses its best 2 groups.
    "deepseek_v3": {"router": "aux_free", "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5},
}


def _experts(n: int, base: ExperimentConfig) -> dict:
    # One expert is the dense baseline: a plain SwiGLU FFN, not a router over one expert.
    if n == 1:
        return {"model": {"pattern": "D"}}
    return {"model": {"pattern": "A", "moe": {"num_experts": n}}}


def _granularity(g: int, base: ExperimentConfig) -> dict:
    """Split each expert into g smaller ones and route to g times as many: active FLOPs stay fixed."""
    moe = base.model.moe
    hidden = moe.expert_hidden or base.model.ffn_hidden
    if hidden % g:
        raise ValueError(f"granularity {g} does not divide the expert hidden size {hidden}")
    return {
        "model": {"moe": {"num_experts": moe.num_experts * g, "top_k": moe.top_k * g, "expert_hidden": hidden // g}}
    }


def _size(preset: str, base: ExperimentConfig) -> dict:
    """A model size of a preset ladder (e.g. micro-1 … micro-6): the preset's model shape, nothing else."""
    if preset not in PRESETS:
        raise ValueError(f"unknown size {preset!r}; choose a preset: {sorted(PRESETS)}")
    return {"model": PRESETS[preset]["model"]}


def _design(name: str, base: ExperimentConfig) -> dict:
    """`dense` (SwiGLU FFN), or `moe_g<G>`: the base's E experts at granularity G (`_granularity`: E·G experts of
    1/G the FFN's hidden size, top-k·G), so every design has the dense model's active FFN compute."""
    if name == "dense":
        return _experts(1, base)
    if not name.startswith("moe_g") or not name.removeprefix("moe_g").isdigit():
        raise ValueError(f"unknown design {name!r}; use dense or moe_g<G> (moe_g1, moe_g2, …)")
    return deep_merge({"model": {"pattern": "A"}}, _granularity(int(name.removeprefix("moe_g")), base))


def _variant(name: str, base: ExperimentConfig) -> dict:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose one of {sorted(VARIANTS)}")
    return {"model": {"pattern": VARIANTS[name]}}


def count_params(exp: ExperimentConfig) -> int:
    """Total parameters of the model an experiment builds (on the meta device: no memory, no init cost)."""
    import torch

    from raybio.models.model import BioLM

    with torch.device("meta"):
        return sum(p.numel() for p in BioLM(exp.model, exp.data.tokenizer.build().vocab_size).parameters())


def _variant_equal_params(name: str, base: ExperimentConfig) -> dict:
    """The variant's pattern at the width, then FFN size, whose parameter count is closest to the base's.

    Width moves in steps of 2·n_heads (coarse at small widths); the SwiGLU hidden size, on
    which the count depends linearly, then closes the remaining gap.
    """
    from raybio.config import validate

    target = count_params(base)
    step = 2 * base.model.n_heads  # keeps d_model divisible by heads with an even head dim
    pattern = _variant(name, base)

    def build(d_model: int, d_ffn: int | None = None) -> ExperimentConfig:
        over = deep_merge(pattern, {"model": {"d_model": d_model, "d_ffn": d_ffn}})
        return validate(deep_merge(base.model_dump(), over))

    d = min(range(step, 4 * base.model.d_model + 1, step), key=lambda w: abs(count_params(build(w)) - target))
    h0, h1 = 4 * d, 4 * d + 8
    p0, p1 = count_params(build(d, h0)), count_params(build(d, h1))
    d_ffn = max(8, round((h0 + (target - p0) * (h1 - h0) / (p1 - p0)) / 8) * 8)
    return deep_merge(pattern, {"model": {"d_model": d, "d_ffn": d_ffn}})


def _router(name: str, base: ExperimentConfig) -> dict:
    if name not in ROUTERS:
        raise ValueError(f"unknown routing rule {name!r}; choose one of {sorted(ROUTERS)}")
    return {"model": {"moe": ROUTERS[name]}}


AXES: dict[str, Callable[[object, ExperimentConfig], dict]] = {
    "experts": _experts,
    "granularity": _granularity,
    "variant": _variant,
    "size": _size,
    "design": _design,
    "variant_equal_params": _variant_equal_params,
    "router": _router,
    "top_k": lambda k, base: {"model": {"moe": {"top_k": k}}},
    "d_model": lambda d, base: {"model": {"d_model": d}},
    "n_layers": lambda n, base: {"model": {"n_layers": n}},
    "pattern": lambda p, base: {"model": {"pattern": p}},
    # Batch shrinks as windows grow, so every context length sees the same tokens per step.
    "seq_len": lambda n, base: {
        "data": {"seq_len": n},
        "model": {"max_seq_len": max(n, base.model.max_seq_len)},
        "train": {"batch_size": max(1, base.train.batch_size * base.data.seq_len // n)},
    },
}


def dotted(path: str, value: object) -> dict:
    """`("train.lr", 1e-3)` -> `{"train": {"lr": 1e-3}}`."""
    tree: dict = {}
    node = tree
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return tree


# Named axes that derive their values from the model the other axes made (the FFN a design's experts split, the
# parameter count a variant matches): applied after every other axis, so the result never depends on axis order
# (a record's axes come back from sweep.json in sorted order).
DERIVED = ("granularity", "design", "variant_equal_params")


def trial_experiment(base: ExperimentConfig, params: dict) -> ExperimentConfig:
    """The validated experiment of one trial's axis values (named axes or dotted paths): every other axis against
    the base, then the DERIVED ones against the experiment the others made."""
    from raybio.config import validate

    if unknown := [n for n in params if n not in AXES and "." not in n]:
        raise ValueError(f"unknown sweep axis {unknown[0]!r}; use one of {sorted(AXES)} or a dotted config path")
    exp = base
    for stage in (False, True):
        parts = [AXES[n](v, exp) if n in AXES else dotted(n, v) for n, v in params.items() if (n in DERIVED) == stage]
        if parts or not stage:  # the first stage always validates: an empty trial is the base, checked
            exp = validate(functools.reduce(deep_merge, parts, exp.model_dump()))
    return exp
