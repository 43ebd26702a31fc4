"""Throughput, memory and efficiency measurement inside a training worker."""

from __future__ import annotations

import os
import resource
import sys
import time

import torch
import torch.distributed as dist

# Dense bf16 tensor-core peak FLOP/s by device-name fragment (vendor datasheets), for MFU.
GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


def gpu_peak_flops(device: torch.device) -> float | None:
    """Datasheet bf16 peak of the current GPU, or None where unknown (CPU, other GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in GPU_PEAK_BF16.items() if k in name), None)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak allocated GPU memory, or this process's peak RSS on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


class StepWindow:
    """Per-step scalars since the last report, kept on the device; `read` brings them all to the host in
    one transfer (torchtitan reads its loss at log steps only, for the same reason: each read is a sync)."""

    def __init__(self):
        self.steps: list[int] = []
        self.values: list[torch.Tensor] = []

    def add(self, step: int, *scalars: torch.Tensor) -> None:
        self.steps.append(step)
        self.values.append(torch.stack([s.float().reshape(()) for s in scalars]))

    def read(self) -> list[tuple[int, list[float]]]:
        """(step, [scalars]) for every step added since the last read, in order."""
        rows = torch.stack(self.values).tolist() if self.values else []
        out = list(zip(self.steps, rows, strict=True))
        self.steps, self.values = [], []
        return out


class StepMeter:
    """Accumulates tokens, step time and data-wait time between two reports.

    Step times are honest without a sync per step: on the CPU every op has finished when a step
    returns, so the host clock measures it; on CUDA each step is bracketed by two CUDA events,
    read (one synchronisation) when the window is summarised at a report.
    """

    def __init__(self, device: torch.device, flops_per_token_train: float):
        self.device = device
        self.flops_per_token = flops_per_token_train
        self.peak_flops = gpu_peak_flops(device)
        self.cum_tokens = 0  # this worker's, since the start of training
        self.reset()

    def reset(self) -> None:
        self.tokens = self.steps = 0
        self.step_time = self.wait_time = 0.0
        self.events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.window_start = time.perf_counter()

    def start(self, waited: float) -> None:
        """A step begins, after `waited` seconds for its batch."""
        self.wait_time += waited
        self._started = time.perf_counter()
        if self.device.type == "cuda":
            self.events.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
            self.events[-1][0].record()

    def stop(self, tokens: int) -> None:
        """The step (on `tokens` tokens) has been issued; on CUDA it may still be running."""
        self.tokens += tokens
        self.cum_tokens += tokens
        self.steps += 1
        if self.device.type == "cuda":
            self.events[-1][1].record()
        else:
            self.step_time += time.perf_counter() - self._started

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.step_time = sum(start.elapsed_time(end) for start, end in self.events) / 1000

    def summary(self) -> dict[str, float]:
        """Metrics over the window since the last summary, aggregated over all workers."""
        self.sync()
        elapsed = time.perf_counter() - self.window_start
        local = torch.tensor(
            [self.tokens, self.cum_tokens, elapsed, self.step_time, self.wait_time, max(self.steps, 1)],
            dtype=torch.float64,
        )
        peak = torch.tensor([peak_memory_bytes(self.device)], dtype=torch.float64)
        world = 1
        if dist.is_available() and dist.is_initialized():
            world = dist.get_world_size()
            local, peak = local.to(_comm_device()), peak.to(_comm_device())
            dist.all_reduce(local)
            dist.all_reduce(peak, op=dist.ReduceOp.MAX)
            local, peak = local.cpu(), peak.cpu()
        tokens, cum_tokens, elapsed, step_time, wait_time, steps = local.tolist()
        elapsed /= world
        tps = tokens / max(elapsed, 1e-9)
        out = {
            "tokens_per_s": tps,
            "tokens_per_s_per_worker": tps / world,
            "step_time_s": step_time / steps,
            "data_wait_s": wait_time / steps,
            "data_wait_fraction": wait_time / max(step_time + wait_time, 1e-9),
            "tokens_seen": cum_tokens,
            "train_flops_cum": cum_tokens * self.flops_per_token,
            "achieved_flops_per_s": tps * self.flops_per_token,
            "peak_memory_bytes": peak.item(),
            # The conditions of these figures: other trials share the machine (rank 0's node).
            "load_avg_1m": os.getloadavg()[0],
        }
        if self.peak_flops:
            out["mfu"] = out["achieved_flops_per_s"] / (world * self.peak_flops)
        self.reset()
        return out


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
