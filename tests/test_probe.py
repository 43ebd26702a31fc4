"""The throughput probe times each config alone through Ray: repeatable, and ordered by FLOPs."""

from raybio.analysis.probe import ProbeSettings, probe_configs
from raybio.models.flops import flops_per_token


def _variant(exp, n_layers):
    return exp.model_copy(update={"model": exp.model.model_copy(update={"n_layers": n_layers, "d_model": 128})})


def test_identical_configs_probe_alike_and_twice_the_flops_probe_slower(ray_local, lambda_corpus):
    uri, manifest, exp = lambda_corpus
    small, big = _variant(exp, 2), _variant(exp, 4)
    vocab = manifest.tokenizer.vocab_size
    ratio = flops_per_token(big.model, 64, vocab).train / flops_per_token(small.model, 64, vocab).train
    assert 1.7 < ratio < 2.1  # the premise: the big config costs about twice the FLOPs per token

    out = probe_configs({"A": small, "A again": small, "B": big}, uri, manifest, ProbeSettings(steps=8, rounds=2))

    a, a2, b = out["A"], out["A again"], out["B"]
    assert abs(a.tokens_per_s - a2.tokens_per_s) / a.tokens_per_s < 0.10
    assert b.tokens_per_s < 0.8 * min(a.tokens_per_s, a2.tokens_per_s)
    assert b.step_time_s > a.step_time_s
    assert len(a.rounds) == 2 and a.peak_memory_MiB > 0
