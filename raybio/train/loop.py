"""The Ray Train worker loop: stream batches, train (DDP or DeepSpeed), measure, report, checkpoint, resume."""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import time

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from raybio.config import ExperimentConfig
from raybio.data.loader import iter_batches, mlm_mask, ntp_targets
from raybio.models.flops import flops_per_token, param_counts
from raybio.models.moe import router_metrics, update_expert_bias
from raybio.train import checkpoint
from raybio.train.engine import build_engine, uses_bf16
from raybio.train.metrics import StepMeter

VAL_SEED = 1234  # validation masks are identical at every evaluation and in every trial


class Objective:
    """Turns a (B, L) token batch into model inputs and labels for MLM or NTP."""

    def __init__(self, exp: ExperimentConfig, tokenizer_spec: dict):
        from raybio.data.tokenizers import MASK_ID, SPECIAL_TOKENS

        self.kind = exp.model.objective
        self.mask_prob = exp.data.mask_prob
        self.vocab_size = tokenizer_spec["vocab_size"]
        # Ids below n_special (specials, modality tokens) are never masked; older manifests lack the keys.
        self.n_special = tokenizer_spec.get("n_special", len(SPECIAL_TOKENS))
        self.mask_id = tokenizer_spec.get("mask_id", MASK_ID)

    def __call__(self, tokens_BL: torch.Tensor, gen: torch.Generator, mask_only: bool = False):
        if self.kind == "ntp":
            return ntp_targets(tokens_BL)
        return mlm_mask(
            tokens_BL, gen, self.mask_id, self.n_special, self.vocab_size, self.mask_prob, mask_only=mask_only
        )


def autocast(device: torch.device, precision: str):
    if uses_bf16(precision, device):
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
    batches = list(itertools.islice(iter_batches(val_iter, exp.train.batch_size), exp.train.eval_batches * world))
    # Under expert parallelism every forward is collective, so all ranks run equally many batches:
    # a stride of a multiple of `world` batches, or all of them when there are fewer.
    strided = len(batches) // world * world
    for i, batch in enumerate(batches[:strided] if strided else batches):
        if strided and i % world != rank:
            continue
        tokens = batch["tokens"]
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
    """Entry point of each Ray Train worker. `config` = {"experiment": dict, "manifest": dict,
    "resume_from": optional `ray.train.Checkpoint` to start from when the run has none of its own}.

    Starts from the run's latest checkpoint when there is one (after a worker or node failure,
    or a run started again under the same name): weights, optimizer, schedule, RNG states and
    data position come back, so the loss trajectory continues as if never interrupted.
    """
    t_start = time.perf_counter()
    _quiet_report_log()
    exp = ExperimentConfig.model_validate(config["experiment"])
    manifest = config["manifest"]
    tcfg = exp.train
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(tcfg.seed)  # same init on every worker, DDP keeps them equal
    device = ray.train.torch.get_device()

    exp.model.vocab_size = manifest["tokenizer"]["vocab_size"]
    seq_len = manifest["seq_len"] - (1 if exp.model.objective == "ntp" else 0)
    model = exp.model.build()
    counts = param_counts(model)
    flops = flops_per_token(exp.model, seq_len)
    engine = build_engine(model, exp, device)
    model, raw_model = engine.model, engine.raw_model
    objective = Objective(exp, manifest["tokenizer"])
    gen = torch.Generator().manual_seed(tcfg.seed * 1000 + rank)

    train_shard = ray.train.get_dataset_shard("train")
    val_iter = ray.train.get_dataset_shard("val")
    static = {
        **counts,
        "flops_per_token_fwd": flops.forward,
        "flops_per_token_train": flops.train,
        "unigram_entropy_nats": manifest["unigram_entropy_nats"],
        "world_size": world,
    }
    meter = StepMeter(device, flops.train)
    restored = checkpoint.restore(engine, rank, world, fallback=config.get("resume_from"))
    if restored:
        state, rank_state = restored
        checkpoint.set_rng_state(rank_state["rng"], gen)
        meter.cum_tokens = rank_state["tokens_seen"]
        initial, latest_val = state.metrics["initial"], state.metrics["latest_val"]
        static |= {"resumed_from_step": state.step, "restore_time_s": time.perf_counter() - t_start}
    else:
        state = checkpoint.TrainState(world_size=world)
        latest_val = {**evaluate(model, val_iter, objective, exp, device), "val_step": 0}
        initial = {f"init_{k}": v for k, v in latest_val.items() if k != "val_step"}
        static |= {"resumed_from_step": 0}

    step, last_loss = state.step, float("nan")
    meter.reset()  # throughput windows start now, not before the initial evaluation or the restore
    while step < tcfg.max_steps:
        # The local shuffle is seeded per epoch, so a resumed run replays the same order.
        shuffle = {"shuffle_buffer": exp.data.shuffle_buffer, "seed": tcfg.seed + state.epoch}
        # Full batches only: every step trains on the same number of tokens.
        batches = iter(iter_batches(train_shard, tcfg.batch_size, drop_last=True, **shuffle))
        # Mid-epoch resume: the split streams in a fixed order (DataConfig preserve_order), so
        # dropping the batches trained on before the checkpoint lands every rank on its next batch.
        collections.deque(itertools.islice(batches, state.batch_in_epoch), maxlen=0)
        t_ready = time.perf_counter()
        for batch in batches:
            t_batch = time.perf_counter()
            inputs, labels = objective(batch["tokens"], gen)
            inputs, labels = inputs.to(device), labels.to(device)
            with autocast(device, tcfg.precision):
                out = model(inputs, labels)
            engine.backward(out.loss)
            engine.step()
            update_expert_bias(raw_model)  # aux-free routers: one bias step per optimizer step
            last_loss = out.lm_loss.item()  # .item() syncs, so the step time below is real
            t_done = time.perf_counter()
            meter.add(inputs.numel(), t_done - t_batch, t_batch - t_ready)
            step += 1
            state.step, state.batch_in_epoch = step, state.batch_in_epoch + 1
            final = step >= tcfg.max_steps
            if step % tcfg.log_every == 0 or final:
                metrics = {
                    "step": step,
                    "loss": last_loss,
                    "aux_loss": out.aux_loss.item(),
                    "lr": engine.lr,
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
                if final or (tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0):
                    state.metrics = {"initial": initial, "latest_val": latest_val}
                    rank_state = {"rng": checkpoint.rng_state(gen), "tokens_seen": meter.cum_tokens}
                    export = {"config.json": {"experiment": exp.model_dump(), "tokenizer": manifest["tokenizer"]}}
                    checkpoint.report(metrics, engine, state, rank_state, rank, world, export)
                else:
                    ray.train.report(metrics)
            t_ready = time.perf_counter()
            if final:
                break
        else:  # the epoch ran out before max_steps
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
