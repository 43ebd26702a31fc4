"""Throughput probe: every distinct trial config timed alone, interleaved, on the trial's own resources.

In-training tokens/s depends on which trials happened to share the machine. The probe runs
after (or before) the sweep's training, when nothing else of the sweep runs: one Ray task at
a time, asking for one training worker's resources (`cpus_per_worker`, `gpus_per_worker`),
configs interleaved A B C A B C … over `rounds` rounds, so slow drifts of the machine hit
every config alike. Each task times `steps` optimizer steps after `warmup` steps and records
the machine's 1-minute load average as it starts; the round's figure is the median step; the
reported figure is the mean over rounds with its 95 % t-interval, and configs whose intervals
overlap are reported as tied (`tie_groups`): the probe never ranks inside its own noise.

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
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raybio.analysis.estimates import t_interval
from raybio.data.manifest import Manifest, load_manifest
from raybio.tune.record import TrialRun

PROBE_COLUMNS = [
    "probe/tokens_per_s",
    "probe/tokens_per_s_low",
    "probe/tokens_per_s_high",
    "probe/tie_group",
    "probe/step_time_s",
    "probe/peak_memory_MiB",
    "probe/load_avg_1m",
    "probe/window",
]


@dataclass(frozen=True)
class ProbeSettings:
    steps: int = 10
    warmup: int = 3
    rounds: int = 5


@dataclass
class ProbeResult:
    """One config's probe figures (per training worker): tokens/s of each round and its conditions."""

    rounds: list[float]  # tokens/s of each round (median step of the round)
    step_times: list[float]  # the rounds' median step times
    loads: list[float]  # 1-minute load average at the start of each round's task
    peak_memory_MiB: float

    @property
    def tokens_per_s(self) -> float:
        return float(np.mean(self.rounds))

    @property
    def interval(self) -> tuple[float, float]:
        """95 % t-interval of the mean over rounds ((nan, nan) with one round: no spread to judge by)."""
        return t_interval(self.rounds)


def tie_groups(results: dict[str, ProbeResult]) -> dict[str, int]:
    """Rank groups by mean tokens/s, 1 = fastest. Configs whose intervals overlap share a group (a ranking
    inside the noise is a tie; chains A~B~C join one group). Without intervals (one round) every config is
    group 0: not ranked."""
    if any(np.isnan(r.interval[0]) for r in results.values()):
        return dict.fromkeys(results, 0)
    groups, group, low = {}, 0, float("inf")
    for key in sorted(results, key=lambda k: -results[k].tokens_per_s):
        lo, hi = results[key].interval
        if hi < low:  # entirely below every interval of the group so far: a new group
            group += 1
        low = lo if hi < low else min(low, lo)
        groups[key] = group
    return groups


def paired_ratio(num: list[float], den: list[float]) -> tuple[float, float, float]:
    """(estimate, low, high) of throughput `num` over `den` timed in the same interleaved rounds: the geometric
    mean of the per-round ratios (a slow round slows both, so the pairing cancels it) and its 95 % t-interval
    on the log scale; (estimate, nan, nan) from one round."""
    logs = np.log(np.asarray(num, float) / np.asarray(den, float))
    low, high = t_interval(logs)
    return float(np.exp(logs.mean())), float(np.exp(low)), float(np.exp(high))


def against_goal(low: float, high: float, goal: float) -> str:
    """A ratio's interval against a `>= goal` target: met, not met, or a tie with the goal (the goal lies inside
    the interval: the measurement cannot say)."""
    if np.isnan(low):
        return "one round: not judged"
    if low >= goal:
        return "met"
    if high < goal:
        return "NOT met"
    return "tie: the goal lies inside the interval"


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
    from raybio.train.metrics import peak_memory_bytes
    from raybio.train.validation import autocast

    exp = ExperimentConfig.model_validate(exp_dict)
    exp.train.engine, exp.model.moe.ep_size = "ddp", 1  # one process: see the module docstring
    device = torch.device("cuda", 0) if torch.cuda.is_available() and exp.train.gpus_per_worker else torch.device("cpu")
    torch.manual_seed(exp.train.seed)
    engine = build_engine(BioLM(exp.model, manifest.tokenizer.vocab_size), exp, device)
    batches = _real_batches(exp, shards_uri, manifest, warmup + steps)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, load = [], os.getloadavg()[0]
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
    return {
        "step_times": times,
        "tokens_per_step": int(inputs.numel()),
        "peak_memory_bytes": peak_memory_bytes(device),
        "load_avg_1m": load,
    }


def probe_configs(
    experiments: dict[str, object], shards_uri: str, manifest: Manifest, settings: ProbeSettings = ProbeSettings()
) -> dict[str, ProbeResult]:
    """Probe each experiment (keyed by any label) through Ray, one task at a time, interleaved over rounds."""
    import ray

    results = {k: ProbeResult([], [], [], 0.0) for k in experiments}
    fresh = ray.remote(max_calls=1)(time_steps)
    pooled = ray.remote(max_calls=0)(time_steps)  # 0: the worker stays for later tasks (GPU tasks too)
    for round_ in range(settings.rounds):
        for key, exp in experiments.items():
            task = (fresh if round_ == 0 else pooled).options(
                num_cpus=exp.train.cpus_per_worker, num_gpus=exp.train.gpus_per_worker
            )
            out = ray.get(task.remote(exp.model_dump(), shards_uri, manifest, settings.steps, settings.warmup))
            median_step = float(np.median(out["step_times"]))
            r = results[key]
            r.rounds.append(out["tokens_per_step"] / median_step)
            r.step_times.append(median_step)
            r.loads.append(out["load_avg_1m"])
            if round_ == 0:
                r.peak_memory_MiB = out["peak_memory_bytes"] / 2**20
    return results


def probe_sweep(
    results: pd.DataFrame, trials: list[TrialRun], settings: ProbeSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Probe each distinct finished config once, on the corpus it trained on. Returns the results with
    `probe/*` columns (replicates of a config share its figures) and one row per config and round."""
    exps, corpus, key_of_trial, label = {}, {}, {}, {}
    for trial in trials:
        if not trial.ok:
            continue
        key = config_key(trial.experiment)
        exps.setdefault(key, trial.experiment)
        corpus.setdefault(key, trial.shards_uri)
        label.setdefault(key, trial.config)
        key_of_trial[trial.trial_id] = key
    if not exps:
        return results, pd.DataFrame()
    # Every trial of a sweep reads the same corpus unless a data axis (seq_len) varies; group by corpus.
    # Ranks are called within a corpus (one window length): tokens/s at 256 and at 16k tokens do not compete.
    probed: dict[str, ProbeResult] = {}
    groups: dict[str, int] = {}
    for uri in sorted(set(corpus.values())):
        group = {key: exp for key, exp in exps.items() if corpus[key] == uri}
        results_here = probe_configs(group, uri, load_manifest(uri), settings)
        probed |= results_here
        groups |= tie_groups(results_here)
    columns = {
        key: {
            "probe/tokens_per_s": r.tokens_per_s,
            "probe/tokens_per_s_low": r.interval[0],
            "probe/tokens_per_s_high": r.interval[1],
            "probe/tie_group": groups[key],
            "probe/step_time_s": float(np.median(r.step_times)),
            "probe/peak_memory_MiB": r.peak_memory_MiB,
            "probe/load_avg_1m": float(np.mean(r.loads)),
            "probe/window": exps[key].data.seq_len,
        }
        for key, r in probed.items()
    }
    keys = [key_of_trial.get(t) for t in results["trial_id"]]
    out = results.assign(**{col: [columns[k][col] if k else np.nan for k in keys] for col in PROBE_COLUMNS})
    rounds = pd.DataFrame(
        [
            {"config": label[key], "round": i, "tokens_per_s": tps, "step_time_s": st, "load_avg_1m": load}
            for key, r in probed.items()
            for i, (tps, st, load) in enumerate(zip(r.rounds, r.step_times, r.loads, strict=True))
        ]
    )
    return out, rounds
