"""`--probe-only`: a sweep's grid as a record of untrained configs, for the throughput probe alone.

Throughput and memory need no training run: each config of the grid is prepared (its corpus,
at its window length) and described (parameters, training FLOPs per token), and analysis
probes them like the configs of a trained sweep. No loss, so no claim is answered.
"""

from __future__ import annotations

import itertools
import time

import pandas as pd
import torch

from raybio.cluster import init_ray
from raybio.data import storage
from raybio.data.prepare import default_shards_uri, prepare
from raybio.models.flops import flops_per_token, param_counts
from raybio.models.model import BioLM
from raybio.tune.export import flatten
from raybio.tune.record import SweepRecord
from raybio.tune.runner import SweepSpec, sweep_meta
from raybio.tune.space import trial_experiment


def plan_sweep(spec: SweepSpec) -> SweepRecord:
    """One results row per config of a grid sweep (status OK, untrained), its corpus prepared."""
    if spec.search != "grid":
        raise ValueError("--probe-only times every config of a grid: drop --search optuna")
    t0 = time.time()
    root = storage.absolute(spec.storage)
    init_ray()
    rows = []
    for i, values in enumerate(itertools.product(*spec.axes.values())):
        params = dict(zip(spec.axes, values, strict=True))
        exp = trial_experiment(spec.base, params)
        manifest = prepare(exp.data, default_shards_uri(root, exp.data), progress=False)
        vocab = manifest.tokenizer.vocab_size
        with torch.device("meta"):  # sizes only: no memory, no init
            counts = param_counts(BioLM(exp.model, vocab))
        seq = exp.data.seq_len - (exp.model.objective == "ntp")
        rows.append(
            {"trial_id": f"probe{i:03d}", "status": "OK", **params, **counts,
             "flops_per_token_train": flops_per_token(exp.model, seq, vocab).train, "checkpoint_path": "",
             **{f"config.{k}": v for k, v in flatten(exp.model_dump()).items()}}
        )  # fmt: skip
    meta = sweep_meta(spec, wall_time_s=round(time.time() - t0, 1), fit_wall_time_s=0.0, concurrency=1)
    meta.budget, meta.claims, meta.probe = "probe only: no training", [], "after"
    uri = storage.join(root, spec.name)
    return SweepRecord(uri, meta, pd.DataFrame(rows), tb_dir="" if storage.is_remote(uri) else f"{uri}/tensorboard")
