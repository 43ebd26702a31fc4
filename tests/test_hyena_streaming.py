"""Streaming inference: equal to the full forward pass, bounded state, sliding-window attention, embed_fasta."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import KMER_VOCAB as VOCAB
from helpers import small_exp, write_inference_checkpoint

from raybio.config import load_config
from raybio.models.layers import Attention, KVWindow, Rotary
from raybio.models.model import BioLM
from raybio.models.pretrained import load_pretrained
from raybio.models.streaming import Streamer, embed_fasta

pytestmark = pytest.mark.usefixtures("single_thread")


def build(pattern: str, *extra: str):
    torch.manual_seed(0)
    model = BioLM(small_exp(pattern, "ntp", *extra).model, VOCAB).eval()
    # Larger-than-init weights, so a wrong state update would show in the outputs.
    with torch.no_grad():
        for b in model.blocks:
            for name in ("in_proj", "wqkv"):
                if hasattr(b.mixer, name):
                    getattr(b.mixer, name).weight.normal_(std=0.2)
    return model


SPLITS = [1, 1, 30, 1, 17, 64, 3, 83]  # chunk sizes summing to 200, single tokens included


@pytest.mark.parametrize("extra", [(), ("model.hyena.filter_groups=4",), ("model.hyena.short_conv=1",)])
def test_hyena_streaming_equals_full_forward(extra):
    model = build("pure_hyena", *extra)
    ids = torch.randint(7, VOCAB, (2, sum(SPLITS)))
    full = model.hidden_states(ids)
    streamer = Streamer(model, batch_size=2, max_chunk=50)
    bounds = np.cumsum([0, *SPLITS])
    got = torch.cat([streamer.feed(ids[:, a:b]) for a, b in itertools.pairwise(bounds)], dim=1)
    torch.testing.assert_close(got, full, rtol=1e-4, atol=1e-4)
    assert streamer.position == ids.shape[1]


@pytest.mark.parametrize("pattern", ["fast", "striped"])
def test_hybrid_streaming_is_exact_when_window_covers_the_stream(pattern):
    model = build(pattern)
    ids = torch.randint(7, VOCAB, (1, 120))
    full = model.hidden_states(ids)
    streamer = Streamer(model, window=120, max_chunk=32)
    got = torch.cat([streamer.feed(ids[:, :50]), streamer.feed(ids[:, 50:51]), streamer.feed(ids[:, 51:])], dim=1)
    torch.testing.assert_close(got, full, rtol=1e-4, atol=1e-4)
    # With a shorter window, outputs inside the first window are still exact; later ones are approximate.
    short = Streamer(model, window=40, max_chunk=32).feed(ids)
    torch.testing.assert_close(short[:, :40], full[:, :40], rtol=1e-4, atol=1e-4)
    assert (short[:, 60:] - full[:, 60:]).abs().amax() > 1e-3


def test_prefill_and_step_logits_match_full_forward():
    model = build("fast")
    ids = torch.randint(7, VOCAB, (2, 40))
    with torch.no_grad():
        full_logits = model(ids).logits
    streamer = Streamer(model, batch_size=2, window=64)
    torch.testing.assert_close(streamer.prefill(ids[:, :30]), full_logits[:, 29], rtol=1e-4, atol=1e-4)
    for t in range(30, 40):
        torch.testing.assert_close(streamer.step(ids[:, t]), full_logits[:, t], rtol=1e-4, atol=1e-4)


def test_sliding_window_attention_equals_banded_mask():
    torch.manual_seed(0)
    attn, rope = Attention(32, 2, causal=True), Rotary(16, 256, 10000.0)
    x = torch.randn(1, 100, 32)
    window = 24
    # Reference: one pass with absolute RoPE positions and a banded causal mask.
    q, k, v = (t.transpose(1, 2) for t in attn.wqkv(x).view(1, 100, 3, 2, 16).unbind(2))
    i, j = torch.arange(100)[:, None], torch.arange(100)[None, :]
    band = (j <= i) & (j > i - window)
    y = F.scaled_dot_product_attention(rope(q), rope(k), v, attn_mask=band)
    want = attn.wo(y.transpose(1, 2).reshape(1, 100, 32))
    cache = KVWindow(torch.zeros(1, 2, 0, 16), torch.zeros(1, 2, 0, 16), window)
    outs = []
    for a, b in [(0, 7), (7, 8), (8, 60), (60, 100)]:
        out, cache = attn.forward_chunk(x[:, a:b], cache, rope)
        outs.append(out)
        assert cache.k_BHPQ.shape[2] == min(b, window - 1)
    torch.testing.assert_close(torch.cat(outs, 1), want, rtol=1e-4, atol=1e-5)


def test_state_memory_grows_with_depth_not_length():
    sizes = {}
    for layers in (4, 8):
        model = BioLM(load_config(
            "tiny", overrides=["model.pattern=H", "model.objective=ntp",
                               "model.d_model=32", "model.n_heads=2", f"model.n_layers={layers}"]
        ).model, VOCAB).eval()  # fmt: skip
        for length in (10, 1000):
            s = Streamer(model, max_chunk=256)
            s.feed(torch.randint(7, VOCAB, (1, length)))
            sizes[layers, length] = s.state_nbytes()
    assert sizes[4, 10] == sizes[4, 1000] and sizes[8, 10] == sizes[8, 1000]
    assert sizes[8, 10]["hyena"] == 2 * sizes[4, 10]["hyena"] and sizes[4, 10]["attention"] == 0
    # Hybrid: attention state is capped by the window however long the stream.
    model = build("striped")
    s = Streamer(model, window=16)
    s.feed(torch.randint(7, VOCAB, (1, 300)))
    per_layer = 2 * 15 * 32 * 4  # keys + values of 15 positions, width 32, fp32
    assert s.state_nbytes()["attention"] == 2 * per_layer


@pytest.mark.parametrize(
    ("pattern", "objective", "message"),
    [("H", "mlm", "needs a causal model"), ("H", "ntp", "needs hyena.filter='modal'")],
)
def test_streaming_refuses_models_it_cannot_stream(pattern, objective, message):
    model = BioLM(small_exp(pattern, objective, "model.hyena.filter=implicit").model, VOCAB)
    with pytest.raises(ValueError, match=message):
        Streamer(model)


@pytest.mark.parametrize("pattern", ["fast", "pure_hyena"])
def test_embed_fasta_from_checkpoint_equals_full_forward_mean(tmp_path, pattern):
    exp = small_exp(pattern, "ntp", "model.hyena.attention_window=1024", "model.max_seq_len=1024")
    torch.manual_seed(0)
    model = BioLM(exp.model, VOCAB).eval()
    ckpt = write_inference_checkpoint(tmp_path / "ckpt", exp, model)
    rng = np.random.default_rng(0)
    seqs = {"r1": "".join(rng.choice(list("ACGT"), 900)), "r2": "ACGTNNACG"}
    fasta = tmp_path / "x.fa"
    fasta.write_text("".join(f">{k} test\n{v}\n" for k, v in seqs.items()))
    embs = embed_fasta(ckpt, fasta, chunk_tokens=64, per_token=True)
    pretrained = load_pretrained(ckpt)
    loaded, tok = pretrained.model, pretrained.tokenizer
    assert [e.id for e in embs] == ["r1", "r2"]
    for e in embs:
        ids = torch.from_numpy(tok.encode(seqs[e.id]).astype(np.int64))[None]
        full = loaded.hidden_states(ids)[0]
        assert e.n_tokens == ids.shape[1] and e.tokens.shape == (ids.shape[1], 32)
        np.testing.assert_allclose(e.tokens, full.detach().numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(e.mean, full.mean(0).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_embed_fasta_mlm_model_uses_windows(tmp_path):
    exp = small_exp("standard", "mlm")
    model = BioLM(exp.model, VOCAB).eval()
    fasta = tmp_path / "x.fa"
    fasta.write_text(">r\n" + "ACGT" * 300 + "\n")  # 400 tokens: windows of 256 + 144
    (emb,) = embed_fasta(model, fasta, per_token=True)
    ids = torch.tensor(exp.data.tokenizer.build().encode("ACGT" * 300).astype(np.int64))[None]
    want = torch.cat([model.hidden_states(ids[:, :256]), model.hidden_states(ids[:, 256:])], dim=1)[0]
    np.testing.assert_allclose(emb.tokens, want.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_embed_whole_lambda_genome_streams(tmp_path):
    """48.5 kbp -> 16k 3-mer tokens through a causal Hyena model, chunk by chunk."""
    from raybio.data.sources import resolve_source

    torch.manual_seed(0)
    model = BioLM(small_exp("pure_hyena", "ntp", "model.n_layers=2").model, VOCAB)
    (emb,) = embed_fasta(model, resolve_source("bundled:lambda"), chunk_tokens=2048)
    assert emb.n_bases == 48502 and emb.n_tokens == 48502 // 3 + 48502 % 3
    assert emb.mean.shape == (32,) and np.isfinite(emb.mean).all()
