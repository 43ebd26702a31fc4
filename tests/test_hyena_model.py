"""HyenaMoE variants as whole models: causality, patterns, FLOPs, and training on the lambda genome."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import KMER_VOCAB as VOCAB
from helpers import small_exp
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from raybio.config import ConfigError, HyenaConfig
from raybio.models.flops import flops_per_token
from raybio.models.hyena import HyenaLite
from raybio.models.hyena.fftconv import fftconv_flops_per_token
from raybio.models.model import BioLM
from raybio.models.moe import MoE
from raybio.models.presets import PATTERN_PRESETS

pytestmark = pytest.mark.usefixtures("single_thread")


def small(pattern: str, objective: str, *extra: str, n_layers: int = 4):
    return small_exp(pattern, objective, f"model.n_layers={n_layers}", *extra).model


@pytest.mark.parametrize(("pattern", "filt"), [("pure_hyena", "modal"), ("fast", "modal"), ("striped", "implicit")])
def test_causal_model_ignores_future_tokens(pattern, filt):
    torch.manual_seed(0)
    model = BioLM(small(pattern, "ntp", f"model.hyena.filter={filt}"), VOCAB).eval()
    x = torch.randint(7, VOCAB, (2, 48))
    y = x.clone()
    y[:, 30:] = torch.randint(7, VOCAB, (2, 18))
    with torch.no_grad():
        a, b = model(x).logits, model(y).logits
    torch.testing.assert_close(a[:, :30], b[:, :30], rtol=0, atol=1e-5)
    assert (a[:, 30:] - b[:, 30:]).abs().amax() > 1e-3


@pytest.mark.parametrize("filt", ["modal", "implicit"])
def test_bidirectional_operator_sees_both_sides(filt):
    torch.manual_seed(0)
    cfg = HyenaConfig(filter=filt, num_modes=4)
    x = torch.randn(1, 48, 16)
    y = x.clone()
    y[:, 40] += 1.0
    with torch.no_grad():
        for causal in (True, False):
            op = HyenaLite(16, cfg, causal=causal, max_len=256)
            delta_L = (op(x) - op(y)).abs().amax(-1)[0]
            if causal:
                assert delta_L[:40].max() < 1e-6
            else:  # the ten tokens before the change moved: the anti-causal filter carries it back
                assert (delta_L[30:40] > 1e-4).all()
            assert delta_L[40] > 1e-3


@pytest.mark.parametrize("name", sorted(PATTERN_PRESETS))
def test_pattern_presets_build_the_right_blocks(name):
    cfg = small(name, "mlm", n_layers=8)
    per_group = {"fast": (2, 6, 0), "standard": (4, 4, 0), "expressive": (6, 2, 0), "pure_hyena": (0, 8, 0)}
    per_group |= {"striped": (0, 4, 4), "dense": (0, 0, 8), "moe": (8, 0, 0)}
    want = dict(zip("AHD", per_group[name], strict=True))
    assert {kind: cfg.blocks.count(kind) for kind in "AHD"} == want
    model = BioLM(cfg, VOCAB)
    hyena = sum(isinstance(b.mixer, HyenaLite) for b in model.blocks)
    moe = sum(isinstance(b.ffn, MoE) for b in model.blocks)
    assert (moe, hyena, len(model.blocks) - hyena - moe) == per_group[name]


def test_pattern_letters_still_work_and_bad_names_fail():
    assert small("HHAD", "mlm").blocks == "HHAD"
    with pytest.raises(ConfigError, match="unknown pattern preset 'fats'"):
        small("fats", "mlm")
    with pytest.raises(ConfigError, match=r"filter_groups \(5\) must divide d_model \(32\)"):
        small("H", "mlm", "model.hyena.filter_groups=5")


def short_conv_flops(cfg) -> int:
    return 2 * 3 * cfg.d_model * cfg.hyena.short_conv


@pytest.mark.parametrize(("pattern", "objective"), [("H", "ntp"), ("H", "mlm"), ("fast", "mlm"), ("striped", "ntp")])
def test_analytic_flops_match_flop_counter_plus_fft(pattern, objective):
    L = 64
    cfg = small(pattern, objective, "model.hyena.filter_groups=2")
    model = BioLM(cfg, VOCAB).eval()
    x = torch.randint(0, VOCAB, (2, L))
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model(x)  # warm the filter cache: filter generation is not part of the per-token count
        with FlopCounterMode(display=False) as counter:
            model(x)
    # FFTs and the short conv (shifted multiply-adds) are analytic only: FlopCounterMode sees neither.
    unseen = cfg.blocks.count("H") * (fftconv_flops_per_token(cfg.d_model, L) + short_conv_flops(cfg))
    counted = counter.get_total_flops()
    assert flops_per_token(cfg, L, VOCAB).forward - unseen == pytest.approx(counted / x.numel(), rel=1e-9)


def test_implicit_filter_mlp_is_the_only_uncounted_matmul():
    L, order, emb = 64, 16, 5
    cfg = small("H", "ntp", "model.hyena.filter=implicit", f"model.hyena.filter_order={order}")
    model = BioLM(cfg, VOCAB).eval()
    x = torch.randint(0, VOCAB, (1, L))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    mlp_per_layer = 2 * L * (emb * order + 2 * order * order + order * cfg.d_model)
    counted = counter.get_total_flops() - cfg.n_layers * mlp_per_layer
    unseen = cfg.n_layers * (fftconv_flops_per_token(cfg.d_model, L) + short_conv_flops(cfg))
    assert flops_per_token(cfg, L, VOCAB).forward - unseen == pytest.approx(counted / x.numel(), rel=1e-9)


def test_fft_flops_grow_like_log_length():
    ratio = fftconv_flops_per_token(256, 32768) / fftconv_flops_per_token(256, 2048)
    assert 16 / 12 * 0.95 < ratio < 16 / 12 * 1.05  # log2(2L): 16 vs 12


@pytest.fixture(scope="module")
def lambda_tokens() -> torch.Tensor:
    from raybio.data.fasta import read_fasta
    from raybio.data.sources import resolve_source
    from raybio.data.tokenizers import KmerTokenizer

    (rec,) = read_fasta(resolve_source("bundled:lambda"))
    ids = KmerTokenizer(3).encode(rec.seq).astype(np.int64)
    L = 64
    return torch.from_numpy(ids[: len(ids) // L * L]).view(-1, L)


@pytest.mark.parametrize("objective", ["mlm", "ntp"])
@pytest.mark.parametrize("name", sorted(PATTERN_PRESETS))
def test_training_reduces_loss_on_lambda(lambda_tokens, name, objective):
    from raybio.data.loader import mlm_mask, ntp_targets
    from raybio.data.tokenizers import SPECIAL_TOKENS

    torch.manual_seed(0)
    model = BioLM(small(name, objective, "model.d_model=64", "model.n_heads=4"), VOCAB)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    held_out = lambda_tokens[-16:]

    def batch(tokens_BL: torch.Tensor, g: torch.Generator):
        if objective == "ntp":
            return ntp_targets(tokens_BL)
        return mlm_mask(tokens_BL, g, SPECIAL_TOKENS.index("<mask>"), len(SPECIAL_TOKENS), VOCAB)

    def eval_loss() -> float:
        with torch.no_grad():
            return model(*batch(held_out, torch.Generator().manual_seed(1))).lm_loss.item()

    before = eval_loss()
    for _ in range(30):
        rows = torch.randint(0, len(lambda_tokens) - 16, (16,), generator=gen)
        out = model(*batch(lambda_tokens[rows], gen))
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    after = eval_loss()
    assert after < before - 0.1, (before, after)
