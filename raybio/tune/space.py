"""Search axes: the names a sweep varies, and how each value maps onto the config.

A sweep names axes ("experts", "top_k", or any dotted config path such as
"train.lr"); each trial's values become config overrides here, in one place, so
results tables and plots use the same names the user typed.
"""

from __future__ import annotations

from collections.abc import Callable

from raybio.config import deep_merge


def _experts(n: int) -> dict:
    # One expert is the dense baseline: a plain SwiGLU FFN, not a router over one expert.
    if n == 1:
        return {"model": {"pattern": "D"}}
    return {"model": {"pattern": "A", "moe": {"num_experts": n}}}


AXES: dict[str, Callable[[object], dict]] = {
    "experts": _experts,
    "top_k": lambda k: {"model": {"moe": {"top_k": k}}},
    "router": lambda r: {"model": {"moe": {"router": r}}},
    "d_model": lambda d: {"model": {"d_model": d}},
    "n_layers": lambda n: {"model": {"n_layers": n}},
    "pattern": lambda p: {"model": {"pattern": p}},
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


def overrides_for(params: dict) -> dict:
    """Config overrides for one trial's axis values (named axes or dotted paths)."""
    out: dict = {}
    for name, value in params.items():
        if name in AXES:
            part = AXES[name](value)
        elif "." in name:
            part = dotted(name, value)
        else:
            raise ValueError(f"unknown sweep axis {name!r}; use one of {sorted(AXES)} or a dotted config path")
        out = deep_merge(out, part)
    return out
