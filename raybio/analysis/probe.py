"""Throughput probe: every distinct trial config timed alone, interleaved, on the trial's own resources.

In-training tokens/s depends on which trials happened to share the machine. The probe runs
after (or before) the sweep's training, when nothing else of the sweep runs: one Ray task at
a time, asking for one training worker's resources (`cpus_per_worker`, `gpus_per_worker`),
configs interleaved A B C A B C … over `rounds` rounds, so slow drifts of the machine hit
every config alike. Each task times `steps` optimizer steps after `warmup` steps; the
round's figure is the median step; the reported figure is the median over rounds, with the
spread (max − min) / median.

What a probe step is, and why: the model is built from the trial's config (`BioLM(cfg, vocab)`)
and wrapped by `raybio.train.engine.build_engine` (the same AdamW, param groups, schedule and
clipping as training), fed real windows read from the corpus's first training shard and masked
(or shifted) by the training loop's own `Targets`; one step is the
loop's forward (under the same autocast), backward, `engine.step()` and `.item()` sync. That is
one worker's step: the probe runs a single process, so DDP/ZeRO communication and expert
parallelism are not in it (`engine` is taken as `ddp`, `moe.ep_size` as 1), and its
tokens/s is per worker. Data loading is not timed (training reports it as data_wait_fraction).

Peak memory comes from the first round, whose tasks each run in a fresh worker process
(`max_calls=1`), so that CPU peak memory — the process's peak RSS, as training measures it —
belongs to that config alone. Later rounds only time steps, so they may reuse a pooled worker
and skip the process start and imports (seconds per task on a small machine); the warm-up
steps of every task absorb whatever the previous config left in the allocator.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raybio.data.manifest import Manifest, load_manifest
from raybio.tune.runner import TrialRun

PROBE_COLUMNS = ["probe/tokens_per_s", "probe/tokens_per_s_spread", "probe/step_time_s", "probe/peak_memory_MiB"]


@dataclass(frozen=True)
class ProbeSettings:
    steps: int = 10
    warmup: int = 3
    rounds: int = 3


@dataclass
class ProbeResult:
    """One config's probe figures (per training worker)."""

    tokens_per_s: float  # median over rounds
    tokens_per_s_spread: float  # (max − min) / median over rounds
    step_time_s: float
    peak_memory_MiB: float
    rounds: list[float]  # tokens/s of each round

    def columns(self) -> dict[str, float]:
        return {
            "probe/tokens_per_s": self.tokens_per_s,
            "probe/tokens_per_s_spread": self.tokens_per_s_spread,
            "probe/step_time_s": self.step_time_s,
            "probe/peak_memory_MiB": self.peak_memory_MiB,
        }


def config_key(exp) -> str:
    """What decides a step's speed: the model, window, batch, precision (not steps or seeds)."""
    t = exp.train
    return json.dumps(
        {"model": exp.model.model_dump(), "seq_len": exp.data.seq_len, "batch": t.batch_size, "prec": t.precision},
        sort_keys=True,
    )


def _real_batches(exp, shards_uri: str, manifest: Manifest, n: int):
    """`n` training batches (inputs, labels) from the corpus's first train shard, as the loop makes them."""
    import pyarrow.parquet as pq
    import torch

    from raybio.data import storage
    from raybio.data.loader import arrow_to_numpy
    from raybio.train.targets import Targets

    fs, path = storage.filesystem(manifest.split_uris(shards_uri, "train")[0], storage.s3_options(exp.data.s3))
    with fs.open_input_file(path) as f:
        table = pq.read_table(f, columns=["tokens"])
    tokens = torch.from_numpy(arrow_to_numpy(table)["tokens"].astype(np.int64))
    b = exp.train.batch_size
    reps = -(-(n * b) // len(tokens))  # a small shard is cycled
    tokens = tokens.repeat(reps, 1)[: n * b]
    targets = Targets(exp.model.objective, exp.data.mask_prob, manifest.tokenizer)
    gen = torch.Generator().manual_seed(exp.train.seed)
    return [targets(tokens[i * b : (i + 1) * b], gen) for i in range(n)]


def time_steps(exp_dict: dict, shards_uri: str, manifest: Manifest, steps: int, warmup: int) -> dict:
    """Build the trial's model and engine, run `warmup` + `steps` training steps; step times and peak memory."""
    import torch

    from raybio.config import ExperimentConfig
    from raybio.models.model import BioLM
    from raybio.train.engine import build_engine
    from raybio.train.evaluation import autocast
    from raybio.train.metrics import peak_memory_bytes

    exp = ExperimentConfig.model_validate(exp_dict)
    exp.train.engine, exp.model.moe.ep_size = "ddp", 1  # one process: see the module docstring
    device = torch.device("cuda", 0) if torch.cuda.is_available() and exp.train.gpus_per_worker else torch.device("cpu")
    torch.manual_seed(exp.train.seed)
    engine = build_engine(BioLM(exp.model, manifest.tokenizer.vocab_size), exp, device)
    batches = _real_batches(exp, shards_uri, manifest, warmup + steps)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i, (inputs, labels) in enumerate(batches):
        inputs, labels = inputs.to(device), labels.to(device)
        t0 = time.perf_counter()
        with autocast(device, exp.train.precision):
            out = engine.model(inputs, labels)
        engine.backward(out.loss)
        engine.step()
        out.lm_loss.item()  # syncs, as the training loop does
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {"step_times": times, "tokens_per_step": int(inputs.numel()), "peak_memory_bytes": peak_memory_bytes(device)}


def probe_configs(
    experiments: dict[str, object], shards_uri: str, manifest: Manifest, settings: ProbeSettings = ProbeSettings()
) -> dict[str, ProbeResult]:
    """Probe each experiment (keyed by any label) through Ray, one task at a time, interleaved over rounds."""
    import ray

    per_round: dict[str, list[float]] = {k: [] for k in experiments}
    steps: dict[str, list[float]] = {k: [] for k in experiments}
    memory: dict[str, float] = dict.fromkeys(experiments, 0.0)
    fresh = ray.remote(max_calls=1)(time_steps)
    pooled = ray.remote(max_calls=0)(time_steps)  # 0: the worker stays for later tasks (GPU tasks too)
    for round_ in range(settings.rounds):
        for key, exp in experiments.items():
            task = (fresh if round_ == 0 else pooled).options(
                num_cpus=exp.train.cpus_per_worker, num_gpus=exp.train.gpus_per_worker
            )
            out = ray.get(task.remote(exp.model_dump(), shards_uri, manifest, settings.steps, settings.warmup))
            median_step = float(np.median(out["step_times"]))
            per_round[key].append(out["tokens_per_step"] / median_step)
            steps[key].append(median_step)
            if round_ == 0:
                memory[key] = out["peak_memory_bytes"] / 2**20
    results = {}
    for key in experiments:
        tps = np.array(per_round[key])
        med = float(np.median(tps))
        results[key] = ProbeResult(
            tokens_per_s=med,
            tokens_per_s_spread=float((tps.max() - tps.min()) / med),
            step_time_s=float(np.median(steps[key])),
            peak_memory_MiB=memory[key],
            rounds=tps.tolist(),
        )
    return results


def probe_sweep(df: pd.DataFrame, trials: list[TrialRun], settings: ProbeSettings = ProbeSettings()) -> pd.DataFrame:
    """The results table with `probe/*` columns: each distinct finished trial config probed once,
    on the corpus that trial trained on."""
    exps, corpus, key_of_trial = {}, {}, {}
    for trial in trials:
        if not trial.ok:
            continue
        key = config_key(trial.experiment)
        exps.setdefault(key, trial.experiment)
        corpus.setdefault(key, trial.shards_uri)
        key_of_trial[trial.trial_id] = key
    if not exps:
        return df
    # Every trial of a sweep reads the same corpus unless a data axis (seq_len) varies; group by corpus.
    results: dict[str, ProbeResult] = {}
    for uri in sorted(set(corpus.values())):
        group = {key: exp for key, exp in exps.items() if corpus[key] == uri}
        results |= probe_configs(group, uri, load_manifest(uri), settings)
    out = df.copy()
    keys = [key_of_trial.get(t) for t in df["trial_id"]]
    for col in PROBE_COLUMNS:
        out[col] = [results[k].columns()[col] if k else np.nan for k in keys]
    return out
