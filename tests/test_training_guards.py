"""A training run refuses bad steps: a non-finite loss or gradient never reaches the weights or a checkpoint."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import LocalReporter

from raybio.config import load_config
from raybio.data import storage
from raybio.data.loader import read_split
from raybio.models.model import ModelOutput
from raybio.train import checkpoint
from raybio.train.guard import NonFiniteGuard, NonFiniteStepError
from raybio.train.trainer import Trainer
from raybio.tune.args import SMOKE


class _NaNGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


class Faulty(torch.nn.Module):
    """The model, except that the forward passes numbered in `nan_loss` return a NaN loss and those in
    `nan_grad` a finite loss whose gradient is NaN."""

    def __init__(self, model, nan_loss=(), nan_grad=()):
        super().__init__()
        self.model, self.nan_loss, self.nan_grad, self.calls = model, set(nan_loss), set(nan_grad), 0

    def forward(self, inputs, labels=None):
        out = self.model(inputs, labels)
        if not self.training or labels is None:
            return out
        self.calls += 1
        if self.calls in self.nan_loss:
            return ModelOutput(out.logits, out.loss * math.nan, out.lm_loss * math.nan, out.aux_loss)
        if self.calls in self.nan_grad:
            return ModelOutput(out.logits, _NaNGradient.apply(out.loss), out.lm_loss, out.aux_loss)
        return out


def trainer(lambda_corpus, tmp_path, *overrides, **faults) -> tuple[Trainer, LocalReporter]:
    uri, manifest, _ = lambda_corpus
    exp = load_config("tiny", overrides=[*SMOKE, "train.checkpoint_every=5", *overrides])
    reporter = LocalReporter(tmp_path)
    tok = storage.read_bytes(storage.join(uri, manifest.tokenizer.file))
    t = Trainer(exp, manifest, tok, read_split(uri, manifest, "train"), read_split(uri, manifest, "val"),
                reporter, torch.device("cpu"))  # fmt: skip
    t.engine.model = Faulty(t.engine.model, **faults)
    return t, reporter


def weights(t: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in t.engine.raw_model.parameters()]


def test_a_nan_loss_stops_the_run_naming_the_step_and_the_last_checkpoint_stays_good(lambda_corpus, tmp_path):
    t, reporter = trainer(lambda_corpus, tmp_path, "train.on_nonfinite=stop", nan_loss=[7])
    with pytest.raises(NonFiniteStepError, match=r"step 7: loss is nan .*latest checkpoint is the last good one"):
        t.train()
    assert [c.name for c in reporter.checkpoints] == ["checkpoint_step00000005"]
    assert checkpoint.verify(reporter.checkpoints[-1])["step"] == 5  # intact: every file matches its checksum
    saved = torch.load(reporter.checkpoints[-1] / "model.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in saved.values())
    assert all(torch.isfinite(w).all() for w in weights(t))  # the bad step never touched the weights


def test_isolated_bad_steps_are_skipped_and_counted(lambda_corpus, tmp_path):
    t, reporter = trainer(lambda_corpus, tmp_path, nan_loss=[3], nan_grad=[4, 12])
    state = t.train()
    assert state.step == 20 and state.nonfinite_steps == 3
    last = reporter.metrics[-1]
    assert last["nonfinite_steps"] == 3 and math.isfinite(last["grad_norm"]) and last["grad_norm"] > 0
    assert all(torch.isfinite(w).all() for w in weights(t))


def test_too_many_bad_steps_in_a_row_stop_the_run(lambda_corpus, tmp_path):
    t, _ = trainer(lambda_corpus, tmp_path, "train.max_nonfinite_steps=3", nan_grad=[2, 3, 4])
    with pytest.raises(NonFiniteStepError, match=r"step 4: gradient norm is nan \(3 non-finite step\(s\) in a row"):
        t.train()


def test_a_skipped_step_leaves_the_weights_and_the_schedule_unchanged(lambda_corpus, tmp_path):
    t, _ = trainer(lambda_corpus, tmp_path, nan_grad=[1])
    before, lr = weights(t), t.engine.lr
    batch = next(iter(t._epoch_batches(t.state)))
    t.engine.model.train()
    loss, _, grad_norm = t.train_step(batch["tokens"], step=1)
    assert math.isfinite(loss) and math.isnan(grad_norm)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(t), strict=True)) and t.engine.lr == lr


def test_the_guard_resets_after_a_good_step():
    guard = NonFiniteGuard("skip", max_consecutive=2)
    assert not guard.check(1, float("inf"))
    assert guard.check(2, 1.0, 0.5)
    assert not guard.check(3, 1.0, float("nan"))  # one in a row again, not two
    with pytest.raises(NonFiniteStepError, match="step 4: loss is nan and gradient norm is inf"):
        guard.check(4, float("nan"), float("inf"))
