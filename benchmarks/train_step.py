"""Training-step throughput: raybio's step vs a bare PyTorch loop vs Hugging Face transformers, and CPU MFU.

For each config (d_model 256 x 4 layers, and the tiny preset; `--quick`: a micro config) and each model
family (dense `D` blocks; MoE `A` blocks, 8 experts, top-2), one seeded BioLM is built and every contender
trains a copy of the same weights on the same causal (next-token) batches of 16 x 256 input tokens:

- raybio_eager, raybio_compiled: raybio's step exactly as a worker takes it — `raybio.train.trainer.TrainStep`
  (Targets, forward, the all-ranks finite flag, the DDP engine's backward, clipping, fused AdamW with the
  on-device skip, the device LR schedule) plus the `StepWindow` read every 10 steps as at a report —
  with `train.compile` false and true;
- bare_eager, bare_compiled: the same BioLM in a bare PyTorch loop (loss.backward, clip_grad_norm_, fused
  AdamW, zero_grad), eager and `torch.compile(model)`;
- hf_eager, hf_compiled: `transformers.LlamaForCausalLM` (dense) / `MixtralForCausalLM` (MoE) holding the same
  weights (RoPE pairs permuted to HF's half-split layout; experts stacked as HF's gate_up_proj/down_proj), in
  the same bare loop, with HF's defaults (SDPA attention, its default experts implementation) and compiled.

Before timing, the HF model's logits and loss are checked equal to raybio's (the MoE side trains without
router aux / z losses, which HF's default Mixtral does not compute either). Contenders take turns
(A B C ... A B C ...) over rounds after their warm-up (which includes compilation, and is reported), each
turn starting with one untimed step (the switch from the previous contender's memory); the summary gives
medians with min/max over rounds and `os.getloadavg()` per round. A ratio of two contenders is paired by round
(the geometric mean of the per-round ratios, with its 95 % t-interval), and a goal is met only when the whole
interval clears it, missed when the whole interval falls short, and otherwise a tie that this run cannot
decide (one round, --quick: not judged). The machine's fp32 GEMM peak is
measured in the same run (best `torch.mm` GFLOP/s); MFU = tokens/s x raybio's analytic training FLOPs per
token (raybio/models/flops.py) / that peak.

The last line is the JSON summary: ratios `raybio_over_hf_dense`, `raybio_over_hf_moe` (raybio's step as a
long run takes it, `train.compile: auto` at >= COMPILE_MIN_STEPS steps, i.e. compiled, over HF's default eager
step; d_model 256 x 4 layers; `_tiny` for the tiny preset; the same ratios for a short run's default, eager, as
`raybio_short_over_hf_*`, and compiled over compiled as `raybio_over_hf_compiled_*`), `compiled_over_eager`
(raybio compiled / eager, tiny preset, dense), `mfu_cpu` (raybio's long-run default, d_model 256 x 4 layers,
dense), and every contender's tokens/s. `--full` and `--quick` add `sweep_over_bare`
(two raybio sweep trials at once over two bare loops at once, benchmarks/sweep_pair.py: the demo's 160-step
sweep with --full, 40 steps with --quick) through `sweep_over_bare()`.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

# Passive OpenMP waiting keeps small GEMMs from spinning against other processes (benchmarks/moe_layer.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from raybio.analysis.probe import against_goal, paired_ratio
from raybio.cluster import machine_line
from raybio.config import ExperimentConfig, load_config
from raybio.models.flops import flops_per_token
from raybio.models.model import BioLM
from raybio.train.engine import COMPILE_MIN_STEPS, build_engine, compile_enabled
from raybio.train.metrics import StepWindow
from raybio.train.targets import Targets
from raybio.train.trainer import TrainStep

GOALS = {
    "raybio_over_hf_moe": 1.2,
    "raybio_over_hf_dense": 1.1,
    "raybio_over_hf_moe_tiny": 1.3,
    "raybio_over_hf_dense_tiny": 1.3,
    "sweep_over_bare": 0.8,  # in-sweep training over bare loops, both two at once (benchmarks/sweep_pair.py)
}
CONFIGS = {"d256x4": {"d_model": 256, "n_layers": 4, "n_heads": 8}, "tiny": {}}  # tiny: the preset itself
QUICK = {"micro": {"d_model": 32, "n_layers": 2, "n_heads": 2, "max_seq_len": 64}}
FAMILIES = {
    "dense": ["model.pattern=D"],
    "moe": ["model.pattern=A", "model.moe.aux_loss_coef=0", "model.moe.z_loss_coef=0"],
}
LOG_EVERY = 10  # the StepWindow is read as often as a run reports
COMPILE_PATTERNS = ("D", "A", "H", "AHHH")  # --compile-study: every block type, and the HyenaMoE hybrid


def experiment(model: dict, family: str, seq_len: int) -> ExperimentConfig:
    overrides = [f"model.{k}={v}" for k, v in model.items()] + FAMILIES[family]
    return load_config("tiny", overrides=[*overrides, "model.objective=ntp", f"data.seq_len={seq_len + 1}"])


def permute_rope(w_OD: torch.Tensor, n_heads: int) -> torch.Tensor:
    """q/k rows from raybio's interleaved RoPE pairs (2i, 2i+1) to HF's half split (i, i + Dh/2) per head."""
    O, D = w_OD.shape
    return w_OD.view(n_heads, O // n_heads // 2, 2, D).transpose(1, 2).reshape(O, D)


def hf_twin(model: BioLM):
    """LlamaForCausalLM (dense) or MixtralForCausalLM (MoE) with `model`'s weights."""
    from transformers import LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM

    cfg, moe = model.cfg, "A" in model.cfg.blocks
    common = dict(
        vocab_size=model.vocab_size,
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        rms_norm_eps=1e-6,
        max_position_embeddings=cfg.max_seq_len,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=True,
    )
    if moe:
        hidden = cfg.moe.expert_hidden or cfg.ffn_hidden
        hf = MixtralForCausalLM(
            MixtralConfig(
                **common,
                intermediate_size=hidden,
                num_local_experts=cfg.moe.num_experts,
                num_experts_per_tok=cfg.moe.top_k,
            )
        )
    else:
        hf = LlamaForCausalLM(LlamaConfig(**common, intermediate_size=cfg.ffn_hidden, attention_bias=False))
    D = cfg.d_model
    with torch.no_grad():
        hf.model.embed_tokens.weight.copy_(model.embed.weight)
        hf.model.norm.weight.copy_(model.norm.weight)
        for block, layer in zip(model.blocks, hf.model.layers, strict=True):
            q, k, v = block.mixer.wqkv.weight.split(D)
            layer.self_attn.q_proj.weight.copy_(permute_rope(q, cfg.n_heads))
            layer.self_attn.k_proj.weight.copy_(permute_rope(k, cfg.n_heads))
            layer.self_attn.v_proj.weight.copy_(v)
            layer.self_attn.o_proj.weight.copy_(block.mixer.wo.weight)
            layer.input_layernorm.weight.copy_(block.norm1.weight)
            layer.post_attention_layernorm.weight.copy_(block.norm2.weight)
            if moe:
                ex = block.ffn.experts
                layer.mlp.gate.weight.copy_(block.ffn.router.gate.weight)
                layer.mlp.experts.gate_up_proj.copy_(torch.cat([ex.w1_EDH, ex.w3_EDH], -1).transpose(1, 2))
                layer.mlp.experts.down_proj.copy_(ex.w2_EHD.transpose(1, 2))
            else:
                layer.mlp.gate_proj.weight.copy_(block.ffn.w1.weight)
                layer.mlp.up_proj.weight.copy_(block.ffn.w3.weight)
                layer.mlp.down_proj.weight.copy_(block.ffn.w2.weight)
    return hf


def check_same_function(model: BioLM, hf, tokens_BL: torch.Tensor) -> float:
    """Max |logit difference| between raybio and HF on one batch; raises if logits or loss differ."""
    inputs, labels = tokens_BL[:, :-1], tokens_BL[:, 1:].contiguous()
    with torch.no_grad():
        ours = model(inputs, labels)
        theirs = hf(input_ids=inputs, labels=labels, shift_labels=labels)
    torch.testing.assert_close(theirs.logits, ours.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(theirs.loss, ours.lm_loss, rtol=1e-5, atol=1e-5)
    return (theirs.logits - ours.logits).abs().max().item()


def bare_step(model, hf: bool):
    """A bare PyTorch training step: forward, backward, clip, fused AdamW, zero_grad."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, fused=True)

    def step(tokens_BL: torch.Tensor) -> None:
        inputs, labels = tokens_BL[:, :-1], tokens_BL[:, 1:].contiguous()
        loss = model(input_ids=inputs, labels=labels, shift_labels=labels).loss if hf else model(inputs, labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def raybio_step(model: BioLM, exp: ExperimentConfig, compiled: bool):
    """raybio's step as the worker takes it: engine + TrainStep + the StepWindow read at report steps."""
    exp = exp.model_copy(update={"train": exp.train.model_copy(update={"compile": compiled})})
    engine = build_engine(model, exp, torch.device("cpu"))
    run = TrainStep(engine, Targets("ntp", exp.data.mask_prob, None), torch.Generator(), torch.device("cpu"), "auto")
    window, count = StepWindow(), [0]

    def step(tokens_BL: torch.Tensor) -> None:
        count[0] += 1
        window.add(count[0], *run(tokens_BL))
        if count[0] % LOG_EVERY == 0:
            window.read()

    return step


def contenders(base: BioLM, exp: ExperimentConfig) -> dict:
    hf = hf_twin(base)
    return {
        "raybio_eager": raybio_step(copy.deepcopy(base), exp, compiled=False),
        "raybio_compiled": raybio_step(copy.deepcopy(base), exp, compiled=True),
        "bare_eager": bare_step(copy.deepcopy(base), hf=False),
        "bare_compiled": bare_step(torch.compile(copy.deepcopy(base)), hf=False),
        "hf_eager": bare_step(copy.deepcopy(hf), hf=True),
        "hf_compiled": bare_step(torch.compile(copy.deepcopy(hf)), hf=True),
    }


def gemm_peak_flops(n: int = 1024, reps: int = 20) -> float:
    """Best fp32 `torch.mm` FLOP/s on this machine with torch's threads (the MFU denominator)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def measure(name: str, model: dict, family: str, args) -> dict:
    """Warm up every contender, then time them in turns over rounds; tokens/s medians and spreads."""
    exp = experiment(model, family, args.seq_len)
    vocab = exp.data.tokenizer.build().vocab_size
    torch.manual_seed(0)
    base = BioLM(exp.model, vocab)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randint(5, vocab, (args.batch, args.seq_len + 1), generator=gen) for _ in range(4)]
    max_logit_diff = check_same_function(base, hf_twin(base), batches[0])
    steps = contenders(base, exp)
    warmup_s = {}
    for cname, step in steps.items():
        t = time.perf_counter()
        for i in range(args.warmup):
            step(batches[i % len(batches)])
        warmup_s[cname] = time.perf_counter() - t
    per_round: dict[str, list[float]] = {c: [] for c in steps}
    loads = []
    for r in range(args.rounds):
        for cname, step in steps.items():
            step(batches[r % len(batches)])  # untimed: the switch from the previous contender (caches, allocator)
            t = time.perf_counter()
            for i in range(args.steps):
                step(batches[(r + i) % len(batches)])
            per_round[cname].append(args.batch * args.seq_len * args.steps / (time.perf_counter() - t))
        loads.append(os.getloadavg()[0])
    flops = flops_per_token(exp.model, args.seq_len, vocab).train
    row = {
        "config": name,
        "family": family,
        "flops_per_token_train": flops,
        "max_logit_diff": max_logit_diff,
        "load_per_round": loads,
        "warmup_s": {c: round(v, 1) for c, v in warmup_s.items()},
    }
    for cname, tps in per_round.items():
        row[cname] = {"median": statistics.median(tps), "min": min(tps), "max": max(tps), "rounds": tps}
    return row


def in_turns(steps: dict, batch: torch.Tensor, rounds: int, n: int) -> dict[str, list[float]]:
    """Seconds per step of each contender, `n` steps a turn, in turns (A B A B ...) over `rounds`."""
    per_step = {c: [] for c in steps}
    for _ in range(rounds):
        for c, step in steps.items():
            t = time.perf_counter()
            for _ in range(n):
                step(batch)
            per_step[c].append((time.perf_counter() - t) / n)
    return per_step


def compile_cost(pattern: str, args) -> dict:
    """raybio's step eager vs compiled for one block pattern at the tiny preset (run it with an empty inductor
    cache, as a new trial meets it): the compiled run's extra warm-up (its first training steps and its first
    evaluation forward, which compile their graphs) and both steady step times, measured in turns."""
    exp = load_config(
        "tiny", overrides=[f"model.pattern={pattern}", "model.objective=ntp", f"data.seq_len={args.seq_len + 1}"]
    )
    vocab = exp.data.tokenizer.build().vocab_size
    torch.manual_seed(0)
    base = BioLM(exp.model, vocab)
    batch = torch.randint(5, vocab, (args.batch, args.seq_len + 1), generator=torch.Generator().manual_seed(1))
    models = {c: copy.deepcopy(base) for c in ("eager", "compiled")}
    steps = {c: raybio_step(models[c], exp, compiled=c == "compiled") for c in models}
    first = {c: [] for c in steps}
    for _ in range(3):
        for c, step in steps.items():
            t = time.perf_counter()
            step(batch)
            first[c].append(time.perf_counter() - t)
    evaluation = {}
    for c, m in models.items():  # the trainer evaluates too: eval mode without grad is another graph
        m.eval()
        t = time.perf_counter()
        with torch.no_grad():
            m(batch[:, :-1], batch[:, 1:])
        evaluation[c] = time.perf_counter() - t
        m.train()
    per_step = in_turns(steps, batch, args.rounds, args.steps)
    eager, compiled = (statistics.median(per_step[c]) for c in ("eager", "compiled"))
    warmup = sum(first["compiled"]) - 3 * compiled + evaluation["compiled"] - evaluation["eager"]
    saving = eager - compiled
    return {
        "pattern": pattern,
        "eager_step_s": eager,
        "compiled_step_s": compiled,
        "compiled_over_eager": eager / compiled,
        "compile_warmup_s": warmup,
        "break_even_steps": warmup / saving if saving > 0 else None,
        "demo_160_steps_eager_s": 160 * eager,
        "demo_160_steps_compiled_s": 160 * compiled + warmup,
        "spread_step_s": {c: [min(v), max(v)] for c, v in per_step.items()},
        "load_1m": os.getloadavg()[0],
    }


def compile_study(args) -> list[dict]:
    """`compile_cost` for every block type, each in a fresh process with an empty inductor cache."""
    rows = []
    for pattern in COMPILE_PATTERNS:
        with tempfile.TemporaryDirectory() as cache:
            cmd = [
                sys.executable,
                __file__,
                "--compile-pattern",
                pattern,
                "--rounds",
                str(args.rounds),
                "--steps",
                str(args.steps),
                "--batch",
                str(args.batch),
                "--seq-len",
                str(args.seq_len),
            ]
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]))
    return rows


def sweep_over_bare(quick: bool) -> dict:
    """Two raybio sweep trials at once over two bare loops at once (benchmarks/sweep_pair.py): the ratio, both
    tokens/s and the load; `--full` and `--quick` call it."""
    from sweep_pair import measure_sweep_over_bare  # benchmarks/ is this script's directory

    return measure_sweep_over_bare(quick)


def summarise(rows: list[dict], peak: float, default: str, short: str) -> tuple[dict, dict, dict]:
    """(ratios, their 95 % intervals, tokens/s per contender) from the measured rows; `default` names raybio's
    contender for a long run, `short` the one for a run below COMPILE_MIN_STEPS.
    A ratio of two contenders is paired by round (`paired_ratio`: every contender runs in every round, in
    turns); MFU is the median tokens/s over the peak. Every ratio is given per family and config; the headline
    names are d256x4's (the micro config's with --quick), `_tiny` the tiny preset's, and compiled_over_eager
    is the tiny preset's dense one."""
    names = ("raybio_eager", "raybio_compiled", "bare_eager", "bare_compiled", "hf_eager", "hf_compiled")
    tps = {f"{c}_{r['family']}_{r['config']}": round(r[c]["median"], 1) for r in rows for c in names}
    ratios, intervals = {}, {}
    for r in rows:
        at = f"{r['family']}_{r['config']}"
        for name, (num, den) in {
            f"raybio_over_hf_{at}": (default, "hf_eager"),
            f"raybio_short_over_hf_{at}": (short, "hf_eager"),
            f"raybio_over_hf_compiled_{at}": ("raybio_compiled", "hf_compiled"),
            f"raybio_over_bare_{at}": (default, "bare_eager"),
            f"compiled_over_eager_{at}": ("raybio_compiled", "raybio_eager"),
        }.items():
            ratios[name], *intervals[name] = paired_ratio(r[num]["rounds"], r[den]["rounds"])
        ratios[f"mfu_cpu_{at}"] = r[default]["median"] * r["flops_per_token_train"] / peak
    head = rows[0]["config"]
    tiny = "tiny" if any(r["config"] == "tiny" for r in rows) else head
    alias = {f"raybio_over_hf_{family}": f"raybio_over_hf_{family}_{head}" for family in FAMILIES}
    if tiny != head:
        alias |= {f"raybio_over_hf_{family}_tiny": f"raybio_over_hf_{family}_{tiny}" for family in FAMILIES}
    alias["compiled_over_eager"] = f"compiled_over_eager_dense_{tiny}"
    for name, source in alias.items():
        ratios[name], intervals[name] = ratios[source], intervals[source]
    ratios["mfu_cpu"] = ratios[f"mfu_cpu_dense_{head}"]
    rounded = {k: None if math.isnan(lh[0]) else [round(v, 4) for v in lh] for k, lh in intervals.items()}
    return {k: round(v, 4) for k, v in ratios.items()}, rounded, tps


def table(rows: list[dict]) -> str:
    names = ["raybio_eager", "raybio_compiled", "bare_eager", "bare_compiled", "hf_eager", "hf_compiled"]
    lines = [f"{'config':>7} {'family':>6} " + " ".join(f"{n:>16}" for n in names) + "   (tokens/s: median [min-max])"]
    for r in rows:
        cells = " ".join(f"{r[n]['median']:>7.0f} [{r[n]['min']:.0f}-{r[n]['max']:.0f}]".rjust(16) for n in names)
        lines.append(f"{r['config']:>7} {r['family']:>6} {cells}")
        lines.append(f"{'':>14} warm-up s (incl. compile): {r['warmup_s']}; load per round {r['load_per_round']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="micro config, 1 round of 2 steps (a smoke run)")
    ap.add_argument("--full", action="store_true", help="also sweep_over_bare at the demo's size (--quick: 40 steps)")
    ap.add_argument("--rounds", type=int, default=None, help="timing rounds (default 5; quick 1)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per contender per round (default 5)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first, compilation included (default 3)")
    ap.add_argument("--compile-study", action="store_true", help="only: raybio eager vs compiled per block type")
    ap.add_argument("--compile-pattern", help=argparse.SUPPRESS)  # one pattern of the study, in a child process
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256, help="input tokens per sequence")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.seq_len = 4, 32
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.steps = args.steps or (2 if args.quick else 5)
    args.warmup = args.warmup or (2 if args.quick else 3)
    if args.compile_pattern:
        print(json.dumps(compile_cost(args.compile_pattern, args)))
        return
    if args.compile_study:
        rows = compile_study(args)
        print(
            json.dumps(
                {
                    "benchmark": "train_step_compile",
                    "machine": machine_line(),
                    "batch": args.batch,
                    "seq_len": args.seq_len,
                    "rows": rows,
                }
            )
        )
        return
    t0, load_at_start = time.perf_counter(), os.getloadavg()[0]
    peak = gemm_peak_flops()
    # Throughput matters in long runs; a short one (the tiny preset's 200 steps) does not compile by default.
    default, short = (
        "raybio_compiled" if compile_enabled(load_config("tiny", overrides=[f"train.max_steps={steps}"]).train)
        else "raybio_eager"
        for steps in (COMPILE_MIN_STEPS, COMPILE_MIN_STEPS - 1)
    )  # fmt: skip
    print(
        f"{machine_line()}\ntraining step, {args.batch} x {args.seq_len} input tokens, fp32 CPU, "
        f"{torch.get_num_threads()} threads; fp32 GEMM peak {peak / 1e9:.1f} GFLOP/s; raybio's default: {default} "
        f"for a run of >= {COMPILE_MIN_STEPS} steps, {short} below"
    )
    rows = [
        measure(name, model, family, args)
        for name, model in (QUICK if args.quick else CONFIGS).items()
        for family in FAMILIES
    ]
    peak = max(peak, gemm_peak_flops())  # measured again at the end: the better of the two
    print(table(rows))
    ratios, intervals, tps = summarise(rows, peak, default, short)
    if args.full or args.quick:
        pair = sweep_over_bare(args.quick)
        ratios["sweep_over_bare"] = pair["sweep_over_bare"]
        print(f"  sweep_over_bare = {pair['sweep_over_bare']:.2f} (sweep {pair['sweep_tokens_per_s']:,.0f} / bare pair "
              f"{pair['bare_pair_tokens_per_s']:,.0f} tokens/s, load {pair['load_avg']:.1f})")  # fmt: skip
    verdicts = {}
    for name, goal in GOALS.items():
        if name in intervals:
            low, high = intervals[name] or (math.nan, math.nan)
            verdicts[name] = against_goal(low, high, goal)
            shown = f"[{low:.2f}, {high:.2f}] over {args.rounds} paired rounds" if intervals[name] else "(one round)"
            print(f"  {name} = {ratios[name]:.2f} {shown}  (goal >= {goal}: {verdicts[name]})")
        elif name in ratios:  # sweep_over_bare: one measurement of two pairs at once (benchmarks/sweep_pair.py)
            verdicts[name] = "met" if ratios[name] >= goal else "NOT met"
            print(f"  {name} = {ratios[name]:.2f}  (goal >= {goal}: {verdicts[name]}, one measurement)")
    print(f"  (raybio's step as a long run takes it, {default}, over HF's default eager step; a short run's "
          f"{short}: " + ", ".join(f"{k[len('raybio_short_over_hf_'):]} {v:.2f}" for k, v in ratios.items()
                                   if k.startswith("raybio_short_over_hf_")) + ")")  # fmt: skip
    print(f"  compiled_over_eager = {ratios['compiled_over_eager']:.2f}, mfu_cpu = {ratios['mfu_cpu']:.3f}")
    conditions = {
        "quick": args.quick,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "warmup_steps": args.warmup,
        "dtype": "float32",
        "gemm_peak_flops": peak,
        "raybio_default": default,
        "raybio_default_short_run": short,
        "machine": machine_line(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_1m_at_start": load_at_start,
        "load_1m_at_end": os.getloadavg()[0],
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "goals": GOALS,
        "rows": rows,
    }
    summary = {"benchmark": "train_step", "ratios": ratios, "intervals": intervals, "verdicts": verdicts}
    print(json.dumps({**summary, "tokens_per_s": tps, "conditions": conditions}))


if __name__ == "__main__":
    main()
