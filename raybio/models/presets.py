"""Named block patterns: the HyenaMoE variants and their baselines.

A pattern is a string of block letters (H = HyenaLite + gated MLP, A = attention + MoE FFN,
D = attention + dense FFN) that repeats to fill `n_layers`. `model.pattern` accepts either
letters or one of these names, so a sweep can vary the architecture by name.

HyenaMoE groups blocks in fours. Its ordering inside a group is not pinned down here (no
public implementation exists); we put attention first in each group, so every group opens
with exact token mixing and the Hyena layers that follow refine it — Fast = AHHH,
Standard = AHAH (2:2 alternating), Expressive = AAAH. Striped alternates HyenaLite with a
dense attention block, as StripedHyena does. Kept free of torch so config validation is cheap.
"""

from __future__ import annotations

PATTERN_PRESETS: dict[str, str] = {
    "fast": "AHHH",  # 1 attention-MoE : 3 HyenaLite
    "standard": "AHAH",  # 2 : 2, alternating
    "expressive": "AAAH",  # 3 : 1
    "pure_hyena": "H",
    "striped": "HD",  # HyenaLite / dense attention alternating
    "dense": "D",  # dense transformer
    "moe": "A",  # MoE transformer
}


def resolve_pattern(pattern: str) -> str:
    """Block letters for a preset name; letters pass through. Names are lower case, letters upper case."""
    if pattern in PATTERN_PRESETS:
        return PATTERN_PRESETS[pattern]
    if any(ch.islower() for ch in pattern):
        names = ", ".join(f"{k} ({v})" for k, v in PATTERN_PRESETS.items())
        raise ValueError(f"unknown pattern preset {pattern!r}; use block letters D/A/H or one of: {names}")
    return pattern
