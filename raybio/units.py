"""Numbers for people: SI prefixes for counts, FLOPs and budgets, shared by the sweep record's labels and reports."""

from __future__ import annotations

import math

PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(value: float | None, unit: str = "", digits: int = 3) -> str:
    """1.23e12 -> "1.23 T" + unit (`digits` significant digits); "-" for none."""
    if value is None or not math.isfinite(value):
        return "-"
    scale, prefix = next(((s, p) for s, p in PREFIXES if abs(value) >= s), (1.0, ""))
    return f"{value / scale:.{digits}g} {prefix}{unit}".rstrip()
