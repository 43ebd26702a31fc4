"""The validation sample and its statistics: stratified by source, a standard error that treats windows as
clusters, and the unigram loss of exactly the positions the model was scored on."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from raybio.train.targets import Targets
from raybio.train.validation import Validator, cluster_se, stratified_sample, unigram_log_probs


def test_stratified_sample_keeps_every_source_in_proportion():
    strata = np.array(["dna0"] * 700 + ["dna1"] * 200 + ["protein2"] * 100)
    idx = stratified_sample(strata, 100)
    picked, counts = np.unique(strata[idx], return_counts=True)
    assert dict(zip(picked, counts, strict=True)) == {"dna0": 70, "dna1": 20, "protein2": 10}
    assert len(set(idx)) == 100 and (np.diff(idx) > 0).all()
    assert (stratified_sample(strata, 100) == idx).all()  # fixed: every trial scores the same windows


def test_stratified_sample_is_not_the_first_windows_in_storage_order():
    strata = np.array(["dna"] * 500 + ["protein"] * 500)  # prepare keeps source order
    idx = stratified_sample(strata, 50)
    assert (strata[idx] == "protein").sum() == 25
    assert idx.max() > 450  # drawn across the split, not its head


def test_a_split_smaller_than_the_sample_is_used_whole():
    assert stratified_sample(np.array(["a", "b", "a"]), 10).tolist() == [0, 1, 2]


def test_cluster_se_matches_a_bootstrap_over_windows():
    rng = np.random.default_rng(0)
    counts = rng.integers(20, 60, 400).astype(float)
    window_effect = rng.normal(0, 0.3, 400)  # positions inside a window share it: not independent
    sums = np.array([rng.normal(4.0 + e, 1.0, int(c)).sum() for e, c in zip(window_effect, counts, strict=True)])
    boot = []
    for _ in range(2000):
        i = rng.integers(0, 400, 400)
        boot.append(sums[i].sum() / counts[i].sum())
    assert cluster_se(sums, counts) == pytest.approx(np.std(boot), rel=0.1)
    # Treating every position as independent would understate it.
    naive = np.sqrt(((sums / counts - 4.0) ** 2 * counts).sum() / counts.sum()) / np.sqrt(counts.sum())
    assert cluster_se(sums, counts) > naive


# The two fields of a Manifest the unigram model reads.
_Manifest = SimpleNamespace(
    tokenizer=SimpleNamespace(vocab_size=6, n_special=2, mask_id=1), train_token_counts=[0, 0, 30, 10, 40, 20]
)


def test_unigram_loss_is_the_training_frequencies_cross_entropy_on_the_scored_positions():
    logp = unigram_log_probs(_Manifest, "mlm")
    p = (np.array([30, 10, 40, 20]) + 0.5) / (100 + 2.0)  # add-½ over the 4 content tokens; specials impossible
    assert torch.exp(logp[2:]).numpy() == pytest.approx(p)
    assert torch.isinf(logp[:2]).all()


class _Model(torch.nn.Module):
    """Predicts the training unigram distribution at every position: its loss must equal the unigram loss."""

    def __init__(self, logp):
        super().__init__()
        self.logp = logp.float()

    def forward(self, x):
        logits = torch.where(torch.isinf(self.logp), -1e9, self.logp).expand(*x.shape, -1)
        return type("Out", (), {"logits": logits})()


def test_a_model_that_predicts_unigram_frequencies_learns_zero_nats_beyond_them():
    targets = Targets("mlm", 0.3, _Manifest.tokenizer)
    ev = Validator(None, targets, _Manifest, windows=64, draws=3, batch_size=16, every=0, precision="fp32",
                   device=torch.device("cpu"), rank=0, world=1)  # fmt: skip
    tokens = torch.randint(2, 6, (40, 32), generator=torch.Generator().manual_seed(0))
    ev.sample = {"tags": {}, "variants": {"mask_only": [targets(tokens, torch.Generator().manual_seed(d),
                 mask_only=True) for d in range(3)], "corrupted": []}}  # fmt: skip
    out = ev.run(_Model(unigram_log_probs(_Manifest, "mlm")), step=0)
    assert out["val_loss"] == pytest.approx(out["val_unigram_loss"], abs=1e-5)
    assert 0 < out["val_loss_se"] < 0.1


class _Counting(torch.nn.Module):
    """Counts the windows it scores; its logits make every loss exactly log(vocab)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab, self.windows = vocab, 0

    def forward(self, x):
        self.windows += len(x)
        return type("Out", (), {"logits": torch.zeros(*x.shape, self.vocab)})()


def test_the_untrained_reference_scores_a_quarter_of_the_windows_once_and_later_steps_score_all_draws():
    from raybio.train.validation import REFERENCE_STRIDE

    targets = Targets("mlm", 0.3, _Manifest.tokenizer)
    ev = Validator(None, targets, _Manifest, windows=64, draws=2, batch_size=16, every=0, precision="fp32",
                   device=torch.device("cpu"), rank=0, world=1)  # fmt: skip
    tokens = torch.randint(2, 6, (40, 32), generator=torch.Generator().manual_seed(0))
    draw = lambda d, **kw: targets(tokens, torch.Generator().manual_seed(d), **kw)  # noqa: E731
    in_tag = np.arange(40) < 10
    mask_only = [draw(0, mask_only=True), draw(1, mask_only=True)]
    ev.sample = {"tags": {"source/a": in_tag}, "variants": {"mask_only": mask_only, "corrupted": [draw(0)]}}
    model = _Counting(_Manifest.tokenizer.vocab_size)
    first = ev.run(model, step=0)
    assert model.windows == 40 // REFERENCE_STRIDE and "val_loss_corrupted" not in first
    assert first["val_loss"] == pytest.approx(np.log(_Manifest.tokenizer.vocab_size))
    assert "val_loss/source/a" in first and len(first["val_window_loss"]) == 40 // REFERENCE_STRIDE
    model.windows = 0
    final = ev.run(model, step=100)
    assert model.windows == 3 * 40 and len(final["val_window_loss"]) == 40  # two mask-only draws + the 80/10/10 one


def test_the_paired_eval_se_of_a_difference_is_far_below_either_losss_own_se():
    import pandas as pd

    from raybio.analysis.answer import paired_eval_se

    rng = np.random.default_rng(1)
    counts = rng.integers(60, 80, 300).astype(float)
    hardness = rng.normal(4.0, 0.4, 300)  # windows differ a lot; both models see the same windows
    base = [(hardness + rng.normal(0, 0.02, 300)) * counts for _ in range(5)]
    treat = [(hardness - 0.01 + rng.normal(0, 0.02, 300)) * counts for _ in range(5)]
    frame = lambda arms: pd.DataFrame({"val_window_loss": arms, "val_window_tokens": [counts] * 5})  # noqa: E731
    se = paired_eval_se(frame(treat), frame(base))
    assert se < cluster_se(base[0], counts) / 5  # pairing removes the windows' own spread
    diffs = np.mean([t - b for t, b in zip(treat, base, strict=True)], axis=0)
    boot = [diffs[i].sum() / counts[i].sum() for i in (rng.integers(0, 300, 300) for _ in range(2000))]
    assert se == pytest.approx(np.std(boot), rel=0.15)
