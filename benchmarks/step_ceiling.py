"""How fast raybio's CPU training step could be at most, against the goals of benchmarks/train_step.py.

For each config and family of train_step.py, raybio's long-run step (compiled) and HF's default eager step
are timed in turns over rounds (medians; raybio over HF paired by round, with its 95 % interval, judged
against the goal as train_step.py judges it), then raybio's step is profiled (torch.profiler, self CPU time
of the main thread, which waits for the intra-op threads) and its time split into GEMMs (`mm`, `addmm`,
`bmm`, `_grouped_mm`), the attention kernel (`scaled_dot_product*`, flash on CPU) and everything else
(Inductor's fused elementwise kernels, the optimizer, Python). Two ceilings follow:

- `measured_ceiling`: the step if everything but its GEMMs and its attention kernel took no time;
- `peak_ceiling`: the same with every weight GEMM at the machine's fp32 GEMM peak (a 1024² `torch.mm`,
  measured in the same run), FLOPs from raybio/models/flops.py less the attention scores.

Each is printed over HF's eager tokens/s beside the goal: a goal above the ceiling cannot be met by any
step that runs these GEMMs and this attention kernel in fp32 on this machine. The last line is JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as train_step.py

import torch
from torch.profiler import ProfilerActivity, profile
from train_step import CONFIGS, GOALS, QUICK, bare_step, experiment, gemm_peak_flops, hf_twin, in_turns, raybio_step

from raybio.analysis.probe import against_goal, paired_ratio
from raybio.cluster import machine_line
from raybio.models.flops import flops_per_token
from raybio.models.model import BioLM

GEMM_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::_grouped_mm"}


def split_step(step, batch: torch.Tensor, steps: int) -> dict[str, float]:
    """Shares of the step's main-thread time: GEMM, attention, the rest."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step(batch)
    self_s = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    total = sum(self_s.values())
    gemm = sum(v for k, v in self_s.items() if k in GEMM_OPS)
    attention = sum(v for k, v in self_s.items() if "scaled_dot_product" in k)
    return {"gemm": gemm / total, "attention": attention / total, "rest": (total - gemm - attention) / total}


def measure(name: str, model: dict, family: str, args, peak: float) -> dict:
    exp = experiment(model, family, args.seq_len)
    vocab = exp.data.tokenizer.build().vocab_size
    torch.manual_seed(0)
    base = BioLM(exp.model, vocab)
    batch = torch.randint(5, vocab, (args.batch, args.seq_len + 1), generator=torch.Generator().manual_seed(1))
    steps = {"raybio": raybio_step(copy.deepcopy(base), exp, compiled=True), "hf_eager": bare_step(hf_twin(base), True)}
    for step in steps.values():
        for _ in range(3):
            step(batch)
    tokens_step = args.batch * args.seq_len
    per_round = {c: [tokens_step / s for s in v] for c, v in in_turns(steps, batch, args.rounds, args.steps).items()}
    tps = {c: statistics.median(v) for c, v in per_round.items()}
    ratio, *interval = paired_ratio(per_round["raybio"], per_round["hf_eager"])
    interval = None if math.isnan(interval[0]) else interval
    shares = split_step(steps["raybio"], batch, args.steps)
    step_s = tokens_step / tps["raybio"]
    n_attention = sum(kind in "DA" for kind in exp.model.blocks)  # the families' blocks: attention + FFN or MoE
    scores = 3 * n_attention * 4 * args.seq_len * exp.model.d_model  # train FLOPs/token of QKᵀ and AV
    weight_flops = (flops_per_token(exp.model, args.seq_len, vocab).train - scores) * tokens_step
    measured = step_s * (shares["gemm"] + shares["attention"])
    at_peak = weight_flops / peak + step_s * shares["attention"]
    return {
        "config": name,
        "family": family,
        "tokens_per_s": tps,
        "spread": {c: [min(v), max(v)] for c, v in per_round.items()},
        "shares": shares,
        "gemm_flops_per_s": weight_flops / (step_s * shares["gemm"]),
        "raybio_over_hf": ratio,
        "raybio_over_hf_interval": interval,
        "measured_ceiling_over_hf": ratio * step_s / measured,
        "peak_ceiling_over_hf": ratio * step_s / at_peak,
        "load_1m": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--quick", action="store_true", help="the micro config, 1 round of 2 steps (a smoke test)")
    args = parser.parse_args()
    configs = QUICK if args.quick else {name: CONFIGS[name] for name in args.configs}
    if args.quick:
        args.rounds, args.steps, args.seq_len = 1, 2, 64
    peak = gemm_peak_flops()
    machine = machine_line()
    print(f"{machine}; fp32 GEMM peak {peak / 1e9:.0f} GFLOP/s; {args.batch} x {args.seq_len} tokens")
    rows = []
    for name, model in configs.items():
        for family in ("dense", "moe"):
            row = measure(name, model, family, args, peak)
            rows.append(row)
            goal = GOALS[f"raybio_over_hf_{family}" + ("_tiny" if name == "tiny" else "")]
            s = row["shares"]
            ceilings = f"{row['measured_ceiling_over_hf']:.2f} measured, {row['peak_ceiling_over_hf']:.2f} at peak"
            low, high = row["raybio_over_hf_interval"] or (math.nan, math.nan)
            shown = "" if math.isnan(low) else f" [{low:.2f}, {high:.2f}]"
            print(f"{name:>7} {family:>5}: raybio/HF eager {row['raybio_over_hf']:.2f}{shown} "
                  f"(goal {goal}: {against_goal(low, high, goal)}); ceilings "
                  f"{ceilings}; step: GEMM {s['gemm']:.0%} at {row['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s, "
                  f"attention {s['attention']:.0%}, rest {s['rest']:.0%}; load {row['load_1m']:.1f}")  # fmt: skip
    conditions = {**vars(args), "gemm_peak_flops": peak, "machine": machine, "dtype": "float32"}
    print(json.dumps({"benchmark": "step_ceiling", "rows": rows, "conditions": conditions}))


if __name__ == "__main__":
    main()
