"""The training loop: a `Trainer` whose components decide when they act, and the Ray Train entry point.

`Trainer.train` reads in one screen (torchtitan's `Trainer.train` is the model): each step
trains one batch; the `MetricLogger` decides when to report, the `Validator` when to
validate, the `Checkpointer` when to save, the `NonFiniteGuard` whether a step may touch the
weights. `TrainState` (step, data position, RNGs) goes into every checkpoint, so a restarted
run continues exactly where the last checkpoint left it.
"""

from __future__ import annotations

import collections
import itertools
import math
import time

import torch

from raybio.config import ExperimentConfig
from raybio.data.loader import iter_batches
from raybio.data.manifest import Manifest
from raybio.data.tokenizer_io import tokenizer_from_json
from raybio.models.flops import flops_per_token, param_counts
from raybio.models.model import BioLM
from raybio.models.moe import router_metrics
from raybio.models.pretrained import inference_files
from raybio.train.checkpoint import Checkpointer
from raybio.train.engine import Engine, build_engine
from raybio.train.guard import NonFiniteGuard
from raybio.train.metrics import StepMeter, StepWindow
from raybio.train.reporting import MetricLogger, RayTrainReporter, Reporter
from raybio.train.state import TrainState, rng_state, set_rng_state
from raybio.train.targets import Targets
from raybio.train.validation import Validator, autocast


class TrainStep:
    """One optimizer step as a worker takes it: targets, forward under autocast, the all-ranks finite flag,
    backward and the engine's step, which skips a step whose loss or gradient norm is not finite on the device.
    Returns the loss (NaN where any rank's was not finite), aux loss and pre-clip gradient norm as device
    tensors: nothing is read on the host. (benchmarks/train_step.py times this same object.)"""

    def __init__(self, engine: Engine, targets: Targets, gen: torch.Generator, device: torch.device,
                 precision: str, world: int = 1):  # fmt: skip
        self.engine, self.targets, self.gen = engine, targets, gen
        self.device, self.precision, self.world = device, precision, world

    def __call__(self, tokens_BL: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, labels = self.targets(tokens_BL, self.gen)
        with autocast(self.device, self.precision):
            out = self.engine.model(inputs.to(self.device), labels.to(self.device))
        finite = self._finite_on_every_rank(out.lm_loss.detach())
        self.engine.backward(out.loss, finite)
        grad_norm = self.engine.step(finite)
        loss = torch.where(finite, out.lm_loss.detach(), torch.nan)
        return loss, out.aux_loss.detach(), grad_norm

    def _finite_on_every_rank(self, loss: torch.Tensor) -> torch.Tensor:
        """True (a device bool) where the loss is finite on every rank, so every rank skips together."""
        finite = torch.isfinite(loss)
        if self.world > 1:
            import torch.distributed as dist

            bad = (~finite).float().reshape(1)
            dist.all_reduce(bad)  # a device collective, not a host read
            finite = bad[0] == 0
        return finite


class Trainer:
    """One worker's training run over a train shard and a val shard (Ray Data iterators or datasets)."""

    def __init__(self, exp: ExperimentConfig, manifest: Manifest, tokenizer_json: bytes, train_shard, val_shard,
                 reporter: Reporter, device: torch.device, rank: int = 0, world: int = 1):  # fmt: skip
        t0 = time.perf_counter()
        self.exp, self.tcfg, self.device, self.rank, self.world = exp, exp.train, device, rank, world
        self.train_shard, self.reporter = train_shard, reporter
        torch.manual_seed(self.tcfg.seed)  # same init on every worker, DDP keeps them equal
        vocab = manifest.tokenizer.vocab_size
        model = BioLM(exp.model, vocab)
        flops = flops_per_token(exp.model, manifest.seq_len - (exp.model.objective == "ntp"), vocab)
        self.engine = build_engine(model, exp, device)
        self.targets = Targets(exp.model.objective, exp.data.mask_prob, manifest.tokenizer)
        self.gen = torch.Generator().manual_seed(self.tcfg.seed * 1000 + rank)
        self.meter = StepMeter(device, flops.train)
        self.step_fn = TrainStep(self.engine, self.targets, self.gen, device, self.tcfg.precision, world)
        self.window = StepWindow()  # per-step loss, aux loss, gradient norm, on the device until a report
        self.guard = NonFiniteGuard(self.tcfg.on_nonfinite, self.tcfg.max_nonfinite_steps)
        self.validator = Validator(val_shard, self.targets, manifest, windows=self.tcfg.eval_windows,
                                   draws=self.tcfg.eval_mask_draws, batch_size=self.tcfg.batch_size,
                                   every=self.tcfg.eval_every, precision=self.tcfg.precision, device=device,
                                   rank=rank, world=world)  # fmt: skip
        files = inference_files(exp.model_dump(), tokenizer_from_json(tokenizer_json.decode()))
        self.checkpointer = Checkpointer(self.tcfg.checkpoint_every, reporter, files, rank, world)
        static = {**param_counts(model), "flops_per_token_fwd": flops.forward, "flops_per_token_train": flops.train,
                  "unigram_entropy_nats": manifest.unigram_entropy_nats, "world_size": world}  # fmt: skip
        self.state, static["resumed_from_step"] = self._restore_or_start(), 0
        if self.state.step:
            static |= {"resumed_from_step": self.state.step, "restore_time_s": time.perf_counter() - t0}
        # Building the model, engine and data iterators (the initial evaluation counts as evaluation).
        static["setup_time_s"] = time.perf_counter() - t0 - self.validator.seconds
        self.logger = MetricLogger(self.tcfg.log_every, static)

    def _restore_or_start(self) -> TrainState:
        restored = self.checkpointer.restore(self.engine)
        if restored is None:
            self.validator.run(self.engine.model, step=0)
            initial = {f"init_{k}": v for k, v in self.validator.latest.items() if k != "val_step"}
            return TrainState(world_size=self.world, metrics={"initial": initial})
        state, rank_state = restored
        set_rng_state(rank_state["rng"], self.gen)
        self.meter.cum_tokens = rank_state["tokens_seen"]
        self.validator.latest = state.metrics["latest_val"]
        return state

    def train(self) -> TrainState:
        state, tcfg = self.state, self.tcfg
        self.meter.reset()  # throughput windows start now, not before the initial evaluation or the restore
        while state.step < tcfg.max_steps:
            t_ready = time.perf_counter()
            for batch in self._epoch_batches(state):
                self.meter.start(waited=time.perf_counter() - t_ready)
                self.train_step(batch["tokens"], state.step + 1)
                self.meter.stop(batch["tokens"].numel())
                state.advance()
                final = state.step >= tcfg.max_steps
                if self.logger.should_log(state.step, final):
                    self._report(state, final)
                t_ready = time.perf_counter()
                if final:
                    return state
            state.next_epoch()  # the epoch ran out before max_steps
        return state

    def _epoch_batches(self, state: TrainState):
        # Full batches only (every step trains on the same number of tokens); the local shuffle is
        # seeded per epoch, so a resumed run replays the same order.
        shuffle = {"shuffle_buffer": self.exp.data.shuffle_buffer, "seed": self.tcfg.seed + state.epoch}
        batches = iter(iter_batches(self.train_shard, self.tcfg.batch_size, drop_last=True, **shuffle))
        # Mid-epoch resume: the split streams in a fixed order (preserve_order ingest), so dropping the
        # batches trained on before the checkpoint lands every rank on its next batch.
        collections.deque(itertools.islice(batches, state.batch_in_epoch), maxlen=0)
        return batches

    def train_step(self, tokens_BL: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer step (`TrainStep`); its loss, aux loss and gradient norm wait on the device in
        `self.window` until the next report."""
        scalars = self.step_fn(tokens_BL)
        self.window.add(step, *scalars)
        return scalars

    def _judge_steps(self, state: TrainState) -> tuple[float, float, float]:
        """Read every step since the last report in one host transfer; the guard judges each in order (and
        stops the run, naming the step, before this report's checkpoint). Returns the latest step's values."""
        steps = self.window.read()
        for step, (loss, _, grad_norm) in steps:
            # A non-finite loss's gradient norm means nothing; the guard names the loss alone.
            if not self.guard.check(step, loss, grad_norm if math.isfinite(loss) else None):
                state.nonfinite_steps += 1
        loss, aux, grad_norm = steps[-1][1]
        return loss, aux, grad_norm

    def _report(self, state: TrainState, final: bool) -> None:
        loss, aux, grad_norm = self._judge_steps(state)
        throughput = self.meter.summary()  # the window's training; evaluation and checkpoints are timed apart
        if self.validator.should_validate(state.step, final):
            self.validator.run(self.engine.model, state.step)
        metrics = self.logger.metrics(
            state.step, loss, aux, grad_norm, self.engine.lr, throughput=throughput,
            initial=state.metrics["initial"], router=router_metrics(self.engine.raw_model),
            nonfinite={"nonfinite_steps": state.nonfinite_steps},
            seconds={"eval_time_s": self.validator.seconds, "checkpoint_time_s": self.checkpointer.seconds},
            # Every report carries the latest evaluation (val_step says when), so searchers always find it.
            val=self.validator.latest,
        )  # fmt: skip
        if self.checkpointer.should_save(state.step, final):
            state.metrics["latest_val"] = self.validator.latest
            rank_state = {"rng": rng_state(self.gen), "tokens_seen": self.meter.cum_tokens}
            self.checkpointer.save(metrics, self.engine, state, rank_state)
        else:
            self.reporter.report(metrics)
        self.meter.reset()  # the next window starts after this report


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker entry point. `config` = {"experiment": dict, "manifest": Manifest,
    "tokenizer_json": bytes, "resume_from": optional `ray.train.Checkpoint` to start from while the
    run has none of its own, "local_data": a `LocalData` when the corpus is read whole, else None
    (the run's Ray datasets)}."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    if local := config.get("local_data"):
        train, val = local.shards(ctx.get_world_rank(), ctx.get_world_size())
    else:
        train, val = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("val")
    trainer = Trainer(
        ExperimentConfig.model_validate(config["experiment"]),
        config["manifest"],
        config["tokenizer_json"],
        train,
        val,
        RayTrainReporter(fallback=config.get("resume_from")),
        ray.train.torch.get_device(),
        ctx.get_world_rank(),
        ctx.get_world_size(),
    )
    trainer.train()
