"""What runs once a sweep's trials are done, before its tables are written: the probe, utilisation."""

from __future__ import annotations

import pandas as pd

from raybio.analysis.probe import ProbeSettings, probe_finished_sweep
from raybio.analysis.utilisation import sweep_utilisation


def post_sweep(spec, df: pd.DataFrame, history: pd.DataFrame, root: str, fit_wall_s: float, concurrency: int):
    """(results with probe/* columns, sweep.json fields: conditions of the in-training figures, utilisation)."""
    util = sweep_utilisation(df, history, fit_wall_s, concurrency)
    if spec.probe != "off":
        print(f"[raybio] probing {df['status'].eq('OK').sum()} trial(s): each config alone, interleaved", flush=True)
        settings = ProbeSettings(steps=spec.probe_steps, rounds=spec.probe_rounds)
        df = probe_finished_sweep(df, list(spec.axes), spec.base, root, settings)
    return df, {
        "concurrent_trials": concurrency,
        "fit_wall_time_s": round(fit_wall_s, 1),
        "probe": spec.probe,
        "target_flops": spec.target_flops,
        "utilisation": {"training": util.training, **util.breakdown()},
        "utilisation_line": util.line(),
    }
