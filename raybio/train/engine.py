"""One training-engine interface over torch DDP and DeepSpeed ZeRO (`train.engine`).

The loop only calls `engine.model(...)`, `engine.backward(loss, finite)`, `engine.step(finite)`
(which returns the gradient norm as a tensor and leaves the weights alone when the loss or that
norm is not finite) and, for checkpoints, `engine.save(dir)` / `engine.load(dir)` /
`engine.full_state_dict()`. Both engines use the same torch AdamW with the same param groups
(µP-aware) and the same schedule, so DDP and ZeRO 0-3 take the same steps up to float
reduction order.

No host sync per step (DDP): the finite flags stay on the device. The fused AdamW takes the
flag as `found_inf` and leaves parameters, moments and step counts alone where it is set,
and the LR schedule (`DeviceSchedule`) counts applied steps on the device, so a bad step
reaches neither the weights nor the schedule without the host reading anything. DeepSpeed
reads the norm on the host inside its own step anyway; there the engine reads the loss flag
too, so a non-finite loss never reaches backward.

`train.compile` (`compile_enabled`): each block's forward is compiled in place
(`nn.Module.compile`), so state dicts keep their keys; identical blocks share one graph.

DeepSpeed on CPU (gloo): the optimizer is our torch AdamW, never DeepSpeed's FusedAdam
(which JIT-compiles for about a minute), and the shared-memory allreduce op is marked
unavailable before `deepspeed.initialize`, which would otherwise compile it (~45 s);
ZeRO then runs its collectives on the gloo group Ray Train set up.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist
from torch import nn

from raybio.config import ExperimentConfig, TrainConfig
from raybio.models.blocks import has_experts
from raybio.models.moe import attach_bias_update
from raybio.models.mup import param_groups
from raybio.models.pretrained import WEIGHTS_FILE
from raybio.train import parallel
from raybio.train.schedule import DeviceSchedule, build_scheduler

ADAM_BETAS = (0.9, 0.95)


class Engine(Protocol):
    """What the loop and checkpoints need. `save`, `load` and `full_state_dict` are collective."""

    model: nn.Module  # call this for the forward pass (DDP / DeepSpeed wrapper)
    raw_model: nn.Module  # the BioLM itself (router statistics, hooks)

    # `finite`: a bool tensor, true where the loss is finite on every rank (None: assume it is).
    def backward(self, loss: torch.Tensor, finite: torch.Tensor | None = None) -> None: ...
    # Clip, optimizer step, LR step and zero grads, unless the loss or the gradient norm is not finite;
    # returns the pre-clip gradient norm (0-dim tensor, NaN where DeepSpeed skipped backward).
    def step(self, finite: torch.Tensor | None = None) -> torch.Tensor: ...
    @property
    def lr(self) -> float: ...
    def save(self, directory: Path, rank: int) -> None: ...  # model.pt (rank 0) + optimizer/LR state
    def load(self, directory: Path) -> None: ...
    def full_state_dict(self) -> dict: ...  # full weights (experts gathered), on every rank


def build_optimizer(
    model: nn.Module, exp: ExperimentConfig, expert_groups: bool = False, fused: bool = False
) -> torch.optim.AdamW:
    """AdamW; matrices decay, norms and vectors do not; µP hidden matrices get lr/m (see models/mup.py).

    Aux-loss-free routers get their bias step as a step pre-hook of this optimizer (one
    batched all-reduce for all layers), so whoever steps it keeps the biases moving.
    `expert_groups` moves expert weights into groups of their own, marked the way DeepSpeed's
    ZeRO expects for parameters it partitions over an expert-data-parallel group. `fused`: one
    kernel per step, which can skip a step on an on-device flag (`found_inf`).
    """
    groups = param_groups(model, exp.model, exp.train.lr, exp.train.weight_decay)
    if expert_groups:
        from deepspeed.moe.utils import split_params_into_different_moe_groups_for_optimizer

        groups = [g for g in split_params_into_different_moe_groups_for_optimizer(groups) if g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=exp.train.lr, betas=ADAM_BETAS, fused=fused)
    attach_bias_update(optimizer, model)
    return optimizer


def uses_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast (DDP) / bf16 weights (DeepSpeed) on GPU by default; fp32 on CPU unless asked."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class DDPEngine:
    """torch DDP (or the bare model in a single process) + AdamW + LambdaLR, clipping by global norm.

    With `moe.ep_size > 1` each rank keeps its shard of the experts (raybio/train/parallel.py):
    DDP ignores the expert weights, whose gradients are summed over the ranks holding the
    same shard instead, and the clipping norm counts every shard once.
    """

    def __init__(self, model: nn.Module, exp: ExperimentConfig, device: torch.device):
        self.raw_model = model.to(device)
        self.device = device
        self.tcfg = exp.train
        self.ep = None
        if exp.model.moe.ep_size > 1 and has_experts(exp.model.pattern):
            self.ep = parallel.setup_expert_parallel(self.raw_model, exp.model.moe.ep_size)
        self.model = self.raw_model
        if _world() > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.raw_model, device_ids=ids)
        self.optimizer = build_optimizer(self.raw_model, exp, fused=True)
        self.scheduler = DeviceSchedule(self.optimizer, exp.train, device)

    def backward(self, loss: torch.Tensor, finite: torch.Tensor | None = None) -> None:
        # A non-finite loss is back-propagated too (its gradients are dropped in `step`): skipping it
        # here would need the flag on the host.
        loss.backward()
        parallel.reduce_expert_grads(self.raw_model, self.ep)

    def step(self, finite: torch.Tensor | None = None) -> torch.Tensor:
        norm = parallel.clip_grad_norm_(self.raw_model, self.tcfg.grad_clip, self.ep)
        # The norm is global (after DDP's all-reduce) and `finite` agreed over ranks: every rank decides alike.
        applied = torch.isfinite(norm) if finite is None else finite & torch.isfinite(norm)
        self.optimizer.found_inf = (~applied).float()  # fused AdamW: no update, moments or step count change
        self.optimizer.step()
        self.scheduler.step(applied)
        self.optimizer.zero_grad(set_to_none=True)
        return norm.detach()

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def _state_file(self, directory: Path, rank: int) -> Path:
        # Replicated optimizer state: one copy. Under EP the expert moments differ per rank.
        return directory / (f"engine_rank{rank}.pt" if self.ep else "engine.pt")

    def save(self, directory: Path, rank: int) -> None:
        weights = self.full_state_dict()  # collective under EP
        if rank == 0:
            torch.save(weights, directory / WEIGHTS_FILE)
        if rank == 0 or self.ep:
            state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
            torch.save(state, self._state_file(directory, rank))

    def load(self, directory: Path) -> None:
        # Full expert tensors in model.pt are sliced to this rank's shard by the MoE layers.
        self.raw_model.load_state_dict(
            torch.load(directory / WEIGHTS_FILE, map_location=self.device, weights_only=True)
        )
        rank = dist.get_rank() if self.ep else 0
        state = torch.load(self._state_file(directory, rank), map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def full_state_dict(self) -> dict:
        return parallel.full_state_dict(self.raw_model)


def _deepspeed(device: torch.device):
    """Import DeepSpeed for `device` without JIT-compiling CPU ops."""
    if device.type == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    else:  # DeepSpeed places the model on cuda:LOCAL_RANK; make that the device Ray Train chose
        os.environ["LOCAL_RANK"] = str(device.index or 0)
    os.environ.setdefault("DS_BUILD_OPS", "0")
    import deepspeed
    import deepspeed.ops
    from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder

    if device.type == "cpu":
        # `__compatible_ops__` is cached in the module, so this edit is what the comm backend reads;
        # gloo then carries every collective.
        deepspeed.ops.__compatible_ops__[ShareMemCommBuilder.NAME] = False
    return deepspeed


def deepspeed_config(tcfg: TrainConfig, device: torch.device) -> dict:
    """The DeepSpeed JSON config our TrainConfig describes (one micro-batch per step per worker)."""
    cfg = {
        "train_micro_batch_size_per_gpu": tcfg.batch_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": tcfg.grad_clip,
        "zero_optimization": {"stage": tcfg.zero_stage},
        # Our optimizer is a torch AdamW (the same as DDP's); ZeRO shards its state all the same.
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,  # the loop logs
    }
    if device.type == "cuda" and uses_bf16(tcfg.precision, device):
        cfg["bf16"] = {"enabled": True}
    return cfg


def _expert_groups_module(deepspeed, ep_size: int) -> nn.Module:
    """A parameter-less `deepspeed.moe.layer.MoE` whose only job is to make DeepSpeed treat the model as MoE.

    DeepSpeed reduces a parameter marked `allreduce=False` over the expert-data-parallel group
    named by its `group_name` (and ZeRO partitions it there) only in a model that contains one
    of its own MoE layers; ours are not. This stand-in creates DeepSpeed's expert groups, whose
    layout (EP groups of consecutive ranks, replicas strided by ep_size) is parallel.py's.
    """
    from deepspeed.moe.layer import MoE as DeepSpeedMoE
    from deepspeed.utils import groups

    class ExpertGroups(DeepSpeedMoE):
        def __init__(self):
            nn.Module.__init__(self)  # no experts, no gate: DeepSpeed only inspects the type and these fields
            self.ep_size, self.num_experts, self.num_local_experts = ep_size, ep_size, 0
            self.expert_group_name = f"ep_size_{ep_size}"

        def set_deepspeed_parallelism(self, use_data_before_expert_parallel_: bool = False) -> None:
            if self.expert_group_name not in groups._get_expert_parallel_group_dict():
                groups._create_expert_and_data_parallel(self.ep_size, use_data_before_expert_parallel_=False)

    return ExpertGroups()


class _WithExpertGroups(nn.Module):
    def __init__(self, model: nn.Module, groups: nn.Module):
        super().__init__()
        self.model, self.expert_groups = model, groups

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)


class DeepSpeedEngine:
    """DeepSpeed ZeRO stage 0-3 around the same AdamW and schedule as `DDPEngine`.

    With `moe.ep_size > 1` experts are sharded as in `DDPEngine`; DeepSpeed's own MoE
    machinery then reduces (and ZeRO-partitions) each expert weight over the ranks holding the
    same shard only, and averages by the world size, as parallel.py's module doc derives.
    """

    STATE_DIR, TAG = "deepspeed", "state"

    def __init__(self, model: nn.Module, exp: ExperimentConfig, device: torch.device):
        deepspeed = _deepspeed(device)
        self._deepspeed = deepspeed
        self._skipping = False  # this step's loss was not finite: backward and step are skipped
        self.tcfg = exp.train
        self.raw_model = model
        self.ep = None
        module = model
        if exp.model.moe.ep_size > 1 and has_experts(exp.model.pattern):
            if exp.train.zero_stage == 3:  # DeepSpeed's MoE path stops at stage 2 (ExperimentConfig says so too)
                raise ValueError("engine=deepspeed with moe.ep_size > 1 needs train.zero_stage <= 2")
            self.ep = parallel.setup_expert_parallel(model, exp.model.moe.ep_size)
            for _, p in parallel.expert_params(model):
                p.allreduce, p.group_name = False, f"ep_size_{exp.model.moe.ep_size}"
            module = _WithExpertGroups(model, _expert_groups_module(deepspeed, exp.model.moe.ep_size))
        optimizer = build_optimizer(model, exp, expert_groups=self.ep is not None)
        self.model, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=module,
            optimizer=optimizer,
            lr_scheduler=lambda opt: build_scheduler(opt, exp.train),
            config=deepspeed_config(exp.train, device),
            dist_init_required=not dist.is_initialized(),
        )

    def backward(self, loss: torch.Tensor, finite: torch.Tensor | None = None) -> None:
        # DeepSpeed's step reads the gradient norm on the host anyway; reading the loss flag here costs
        # nothing more and keeps a non-finite loss out of backward.
        self._skipping = finite is not None and not bool(finite)
        if not self._skipping:
            self.model.backward(loss)

    def step(self, finite: torch.Tensor | None = None) -> torch.Tensor:
        if self._skipping:
            self.model.zero_grad()
            return torch.tensor(float("nan"))
        # DeepSpeed clips, steps the optimizer and the scheduler and zeroes grads in one call, so a
        # non-finite gradient norm is reported here (the guard stops the run) but cannot be undone.
        self.model.step()
        norm = self.model.get_global_grad_norm()
        return torch.tensor(float("nan") if norm is None else float(norm))

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def save(self, directory: Path, rank: int) -> None:
        # Collective: every rank writes its own ZeRO partition; Ray Train merges the ranks' directories.
        weights = self.full_state_dict()
        if rank == 0:
            torch.save(weights, directory / WEIGHTS_FILE)
        self.model.save_checkpoint(str(directory / self.STATE_DIR), tag=self.TAG, save_latest=False)

    def load(self, directory: Path) -> None:
        path, _ = self.model.load_checkpoint(
            str(directory / self.STATE_DIR), tag=self.TAG, load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed state under {directory / self.STATE_DIR}/{self.TAG}")
        if self.ep:
            # DeepSpeed keeps expert weights only for its own MoE layers; ours come from the full weights,
            # sliced to this rank's shard (ZeRO's fp32 master partitions were restored with the optimizer).
            weights = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
            self.raw_model.load_state_dict(weights)

    def full_state_dict(self) -> dict:
        """Full fp32 weights on every rank (collective under ZeRO-3, which shards the parameters)."""
        params = list(self.raw_model.parameters())
        ctx = (
            self._deepspeed.zero.GatheredParameters(params, modifier_rank=None)
            if self.tcfg.zero_stage == 3
            else contextlib.nullcontext()
        )
        with ctx:
            return {k: v.detach().float().cpu().clone() for k, v in parallel.full_state_dict(self.raw_model).items()}


# Compiling paid for its warm-up after 340-560 steps for every block type at the tiny preset on a 2-core CPU
# (1.11-1.26x faster steps, 21-43 s of compilation with an empty cache; docs/training.md, "Compile"), so "auto"
# compiles runs of at least about twice that. Demo trials (160 steps) and the tiny preset (200) stay eager.
COMPILE_MIN_STEPS = 1000


def compile_enabled(tcfg: TrainConfig) -> bool:
    """`train.compile` with "auto" resolved: compile where it was measured to pay off, warm-up included."""
    if tcfg.compile != "auto":
        return tcfg.compile
    return tcfg.engine == "ddp" and tcfg.max_steps >= COMPILE_MIN_STEPS


def compile_blocks(model: nn.Module) -> None:
    """`torch.compile` every block's forward in place (`nn.Module.compile`): the module tree and its state-dict
    keys stay as they are (no `_orig_mod.` prefix), and blocks of one kind share one compiled graph."""
    for block in model.blocks:
        block.compile()


def build_engine(model: nn.Module, exp: ExperimentConfig, device: torch.device) -> Engine:
    """The engine `exp.train.engine` names, around a freshly built model (same init on every rank)."""
    if exp.train.engine == "deepspeed":
        return DeepSpeedEngine(model, exp, device)
    if compile_enabled(exp.train):
        compile_blocks(model)
    return DDPEngine(model, exp, device)
