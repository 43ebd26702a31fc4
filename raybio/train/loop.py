"""The Ray Train worker loop: stream batches, train with DDP, measure, report, checkpoint."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import tempfile
import time

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from raybio.config import ExperimentConfig
from raybio.data.loader import TokensCollate, mlm_mask, ntp_targets
from raybio.models.flops import flops_per_token, param_counts
from raybio.train.metrics import StepMeter

VAL_SEED = 1234  # validation masks are identical at every evaluation and in every trial


def lr_lambda(cfg) -> callable:
    """Linear warmup, then cosine decay to `min_lr_ratio` of the peak at `max_steps`."""

    def fn(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return fn


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """AdamW; matrices decay, norms and vectors do not."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=False)


class Objective:
    """Turns a (B, L) token batch into model inputs and labels for MLM or NTP."""

    def __init__(self, exp: ExperimentConfig, tokenizer_spec: dict):
        from raybio.data.tokenizers import SPECIAL_TOKENS

        self.kind = exp.model.objective
        self.mask_prob = exp.data.mask_prob
        self.vocab_size = tokenizer_spec["vocab_size"]
        self.n_special = len(SPECIAL_TOKENS)
        self.mask_id = SPECIAL_TOKENS.index("<mask>")

    def __call__(self, tokens_BL: torch.Tensor, gen: torch.Generator, mask_only: bool = False):
        if self.kind == "ntp":
            return ntp_targets(tokens_BL)
        return mlm_mask(
            tokens_BL, gen, self.mask_id, self.n_special, self.vocab_size, self.mask_prob, mask_only=mask_only
        )


def autocast(device: torch.device, precision: str):
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model, val_iter, objective: Objective, exp: ExperimentConfig, device) -> dict[str, float]:
    """Validation loss on this worker's share of the val split, averaged over all workers.

    Reports the standard 80/10/10 masked loss and, for MLM, the loss with every picked
    token replaced by <mask> (no copying from the input possible).
    """
    model.eval()
    rank, world = ray.train.get_context().get_world_rank(), ray.train.get_context().get_world_size()
    sums = torch.zeros(4, dtype=torch.float64)  # loss·n, n, mask-only loss·n, n
    batches = val_iter.iter_torch_batches(batch_size=exp.train.batch_size, collate_fn=TokensCollate())
    for i, tokens in enumerate(itertools.islice(batches, exp.train.eval_batches * world)):
        if i % world != rank:
            continue
        variants = [False, True] if objective.kind == "mlm" else [False]
        for j, mask_only in enumerate(variants):
            gen = torch.Generator().manual_seed(VAL_SEED + i)
            inputs, labels = objective(tokens, gen, mask_only=mask_only)
            with autocast(device, exp.train.precision):
                out = model(inputs.to(device), labels.to(device))
            n = (labels != -100).sum().item()
            sums[2 * j] += out.lm_loss.item() * n
            sums[2 * j + 1] += n
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    model.train()
    out = {"val_loss": (sums[0] / sums[1].clamp(min=1)).item()}
    if objective.kind == "mlm":
        out["val_loss_mask_only"] = (sums[2] / sums[3].clamp(min=1)).item()
    return out


def _quiet_report_log() -> None:
    # Ray Train logs every report's full metrics dict at INFO from each worker; our own
    # reports are already in Tune's table and TensorBoard.
    from ray.train.v2._internal.execution import context

    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def train_loop_per_worker(config: dict) -> None:
    """Entry point of each Ray Train worker. `config` = {"experiment": dict, "manifest": dict}."""
    _quiet_report_log()
    exp = ExperimentConfig.model_validate(config["experiment"])
    manifest = config["manifest"]
    tcfg = exp.train
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    torch.manual_seed(tcfg.seed)  # same init on every worker, DDP keeps them equal
    device = ray.train.torch.get_device()

    exp.model.vocab_size = manifest["tokenizer"]["vocab_size"]
    seq_len = manifest["seq_len"] - (1 if exp.model.objective == "ntp" else 0)
    model = exp.model.build()
    counts = param_counts(model)
    flops = flops_per_token(exp.model, seq_len)
    model = ray.train.torch.prepare_model(model)
    raw_model = model.module if hasattr(model, "module") else model
    opt = build_optimizer(model, tcfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(tcfg))
    objective = Objective(exp, manifest["tokenizer"])
    gen = torch.Generator().manual_seed(tcfg.seed * 1000 + rank)

    train_shard = ray.train.get_dataset_shard("train")
    val_iter = ray.train.get_dataset_shard("val")
    static = {
        **counts,
        "flops_per_token_fwd": flops.forward,
        "flops_per_token_train": flops.train,
        "unigram_entropy_nats": manifest["unigram_entropy_nats"],
        "world_size": ctx.get_world_size(),
    }
    latest_val = {**evaluate(model, val_iter, objective, exp, device), "val_step": 0}
    initial = {f"init_{k}": v for k, v in latest_val.items() if k != "val_step"}

    meter = StepMeter(device, flops.train)
    step, t_ready = 0, time.perf_counter()
    last_loss = float("nan")
    while step < tcfg.max_steps:
        for tokens in train_shard.iter_torch_batches(batch_size=tcfg.batch_size, collate_fn=TokensCollate()):
            t_batch = time.perf_counter()
            inputs, labels = objective(tokens, gen)
            inputs, labels = inputs.to(device), labels.to(device)
            with autocast(device, tcfg.precision):
                out = model(inputs, labels)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            last_loss = out.lm_loss.item()  # .item() syncs, so the step time below is real
            t_done = time.perf_counter()
            meter.add(inputs.numel(), t_done - t_batch, t_batch - t_ready)
            step += 1
            final = step >= tcfg.max_steps
            if step % tcfg.log_every == 0 or final:
                metrics = {
                    "step": step,
                    "loss": last_loss,
                    "aux_loss": out.aux_loss.item(),
                    "lr": sched.get_last_lr()[0],
                    **meter.summary(),
                    **static,
                    **initial,
                }
                metrics.update(router_metrics(raw_model))
                if final or (tcfg.eval_every and step % tcfg.eval_every == 0):
                    latest_val = {**evaluate(model, val_iter, objective, exp, device), "val_step": step}
                # Every report carries the latest evaluation (val_step says when it was taken),
                # so searchers and schedulers always find their metric.
                metrics.update(latest_val)
                if final:
                    _report_with_checkpoint(metrics, raw_model, exp, manifest, rank)
                else:
                    ray.train.report(metrics)
            t_ready = time.perf_counter()
            if final:
                break


def router_metrics(model) -> dict[str, float]:
    """Per-MoE-layer load statistics from the last forward pass."""
    out = {}
    for i, moe in enumerate(model.moe_layers()):
        load = moe.tokens_per_expert
        mean = load.mean().clamp(min=1e-9)
        out[f"router/layer{i}/max_over_mean_load"] = (load.max() / mean).item()
        out[f"router/layer{i}/load_cv"] = (load.std(unbiased=False) / mean).item()
    return out


def _report_with_checkpoint(metrics: dict, model, exp: ExperimentConfig, manifest: dict, rank: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:  # weights are identical on every DDP rank: one copy is enough
            torch.save(model.state_dict(), os.path.join(tmp, "model.pt"))
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump({"experiment": exp.model_dump(), "tokenizer": manifest["tokenizer"]}, f, indent=2)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)
