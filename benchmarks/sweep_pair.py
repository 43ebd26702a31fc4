"""In-sweep throughput against bare PyTorch, measured in one run on the same machine.

  (a) bare pair: two processes at once, each one intra-op thread, each a plain PyTorch loop over
      `BioLM` (AdamW, clipping, MLM masks drawn per batch, real windows of the corpus) for one of the
      sweep's two trial configs; both time the same interval after a warm-up. Run before and after
      the sweep (the mean is the reference, both are listed).
  (b) a real 2-trial raybio sweep (`run_sweep`, the expert_count study's configs experts=1 and 2,
      probe off, 2 trials at once): its aggregate in-training tokens/s is the sum over the two trials
      of each trial's tokens / time in its report windows (training only: evaluation and checkpoints
      are timed apart), as `tokens_per_s` in the history reports it.

`sweep_over_bare` = (b) / (a). Full mode trains the demo budget (`--budget demo`: 160 steps,
checkpointed every 80, validated at the end); `--quick` 40 steps of it, validated every 20.

Usage: python benchmarks/sweep_pair.py [--quick] [--out benchmarks/results/sweep_pair-DATE-cpu.txt]
The last line printed is one JSON object: {"benchmark": "sweep_pair", "ratios": {...}, "conditions": {...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parents[1]
AXIS = {"experts": [1, 2]}
QUICK = ["train.max_steps=40", "train.eval_every=20", "train.checkpoint_every=20"]  # on top of the demo budget
BARE_SECONDS = {True: 10.0, False: 60.0}
GOAL = 0.8


def _base(quick: bool):
    """The expert_count study's `--budget demo` experiment (what `make demo` trains); quick: 40 steps of it."""
    import runpy

    from raybio.config import deep_merge, parse_overrides, validate
    from raybio.study import base_config, parse

    study = runpy.run_path(str(ROOT / "sweeps" / "expert_count.py"))["STUDY"]
    base = base_config(study, parse(study, ["--budget", "demo"], doc=""))
    return validate(deep_merge(base.model_dump(), parse_overrides(QUICK))) if quick else base


def bare_loop(exp_json: str, shards_uri: str, seconds: float) -> dict:
    """One plain PyTorch training loop on one thread. Prints `ready` after its warm-up, reads the start time
    from stdin (the parent sends one when every loop is ready), returns tokens/s over `seconds` from then."""
    import torch

    from raybio.config import ExperimentConfig
    from raybio.data.loader import mlm_mask, read_whole
    from raybio.data.manifest import read_manifest
    from raybio.models.model import BioLM

    torch.set_num_threads(1)
    exp = ExperimentConfig.model_validate_json(exp_json)
    manifest = read_manifest(shards_uri)
    tokens_NL = torch.from_numpy(read_whole(shards_uri, manifest, "train").tokens_NL.astype("int64"))
    t, tok = exp.train, manifest.tokenizer
    torch.manual_seed(0)
    model = BioLM(exp.model, tok.vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=(0.9, 0.95), weight_decay=t.weight_decay)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        batch = tokens_NL[torch.randint(0, len(tokens_NL), (t.batch_size,), generator=gen)]
        inputs, labels = mlm_mask(batch, gen, tok.mask_id, tok.n_special, tok.vocab_size, exp.data.mask_prob)
        out = model(inputs, labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        out.lm_loss.item()

    for _ in range(3):
        step()
    print("ready", flush=True)
    time.sleep(max(0.0, float(sys.stdin.readline()) - time.time()))
    t0, steps = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        step()
        steps += 1
    elapsed = time.perf_counter() - t0
    return {"tokens_per_s": steps * t.batch_size * exp.data.seq_len / elapsed, "steps": steps}


def bare_pair(exps: list, shards_uri: str, seconds: float) -> list[float]:
    """Tokens/s of one bare loop per experiment, all running at once in separate processes over one interval."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--bare", e.model_dump_json(), shards_uri, str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for e in exps
    ]
    for p in procs:  # every loop built and warmed up
        while (line := p.stdout.readline()) and line.strip() != "ready":
            pass
    start_at = time.time() + 0.5
    out = [json.loads(p.communicate(f"{start_at}\n")[0].strip().splitlines()[-1]) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("a bare training loop failed (its traceback is above)")
    return [o["tokens_per_s"] for o in out]


def in_training_tokens_per_s(history) -> dict[str, float]:
    """Per trial: Σ tokens / Σ report-window seconds. Every step trains as many tokens, so this is the
    windows' `tokens_per_s` averaged harmonically, each window weighted by its steps."""
    out = {}
    for trial, h in history.sort_values("step").groupby("trial_id"):
        steps = h["step"].diff().fillna(h["step"].iloc[0])
        out[trial] = float(steps.sum() / (steps / h["tokens_per_s"]).sum())
    return out


def measure_sweep_over_bare(quick: bool) -> dict:
    """(a) two bare loops at once and (b) a 2-trial raybio sweep, in this run; their ratio and conditions."""
    import ray

    from raybio.analysis.utilisation import sweep_utilisation
    from raybio.cluster import init_ray
    from raybio.data.prepare import default_shards_uri, prepare
    from raybio.tune.runner import SweepSpec, run_sweep
    from raybio.tune.space import trial_experiment

    base = _base(quick)
    exps = [trial_experiment(base, {"experts": e}) for e in AXIS["experts"]]
    with tempfile.TemporaryDirectory(prefix="raybio-sweep-pair-") as root:
        shards_uri = default_shards_uri(root, base.data)
        init_ray()
        prepare(base.data, shards_uri, progress=False)
        ray.shutdown()  # the bare loops run without Ray; the sweep starts its own cluster
        before = bare_pair(exps, shards_uri, BARE_SECONDS[quick])
        spec = SweepSpec(name="pair", axes=AXIS, base=base, storage=root, probe="off", command=["sweep_pair"])
        record = run_sweep(spec)
        ray.shutdown()
        after = bare_pair(exps, shards_uri, BARE_SECONDS[quick])
    per_trial = in_training_tokens_per_s(record.history)
    bare = (sum(before) + sum(after)) / 2
    sweep = sum(per_trial.values())
    u = sweep_utilisation(record.results, record.history, record.meta.fit_wall_time_s, record.meta.concurrent_trials)
    return {
        "sweep_over_bare": sweep / bare,
        "bare_pair_tokens_per_s": bare,
        "sweep_tokens_per_s": sweep,
        "load_avg": float(statistics.median(record.history["load_avg_1m"])),
        "bare_pair_before": before,
        "bare_pair_after": after,
        "sweep_per_trial": per_trial,
        "utilisation": u.training,
        "utilisation_line": u.line(),
        "steps": base.train.max_steps,
    }


def main() -> None:
    if sys.argv[1:2] == ["--bare"]:
        exp_json, shards_uri, seconds = sys.argv[2:5]
        print(json.dumps(bare_loop(exp_json, shards_uri, float(seconds))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 steps per trial, 10 s bare loops")
    parser.add_argument("--out", help="also write the printed results to this file")
    args = parser.parse_args()
    from raybio.cluster import machine_line

    result = measure_sweep_over_bare(args.quick)
    lines = [
        f"sweep_pair: {machine_line()}; load average (1 min, median over reports) {result['load_avg']:.1f}",
        f"bare pair (2 processes x 1 thread, before / after the sweep): "
        f"{sum(result['bare_pair_before']):,.0f} / {sum(result['bare_pair_after']):,.0f} tokens/s",
        f"sweep (2 trials at once, {result['steps']} steps each), in-training tokens/s per trial: "
        + ", ".join(f"{v:,.0f}" for v in result["sweep_per_trial"].values())
        + f" = {result['sweep_tokens_per_s']:,.0f}",
        f"sweep_over_bare {result['sweep_over_bare']:.3f} (goal >= {GOAL})",
        result["utilisation_line"],
    ]
    summary = {
        "benchmark": "sweep_pair",
        "ratios": {"sweep_over_bare": result["sweep_over_bare"]},
        "conditions": {"quick": args.quick, "goals": {"sweep_over_bare": GOAL}, **result},
    }
    text = "\n".join(lines)
    if args.out:
        Path(args.out).write_text(text + "\n" + json.dumps(summary) + "\n")
    print(text)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
