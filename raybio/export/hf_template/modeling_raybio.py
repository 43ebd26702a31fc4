"""A raybio model for Hugging Face transformers: pure torch, nothing imported beyond torch and transformers.

Written from the definitions in raybio's docs (docs/export.md lists them), not by importing
raybio, so it loads where raybio is not installed. Parameter names match raybio's state dict
under the `model.` prefix. Routing is raybio's evaluation routing (no jitter, no auxiliary
loss; capacity drops only when the model was trained with `capacity_factor`), and the HF
classes add no router losses to their training loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import (
    BaseModelOutput,
    CausalLMOutput,
    MaskedLMOutput,
    SequenceClassifierOutput,
)

from .configuration_raybio import RaybioConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


class LayerNorm(nn.Module):
    """LayerNorm without scale or shift (OLMo)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), (self.dim,), eps=self.eps).type_as(x)


def make_norm(kind: str, dim: int) -> nn.Module:
    return RMSNorm(dim) if kind == "rmsnorm" else LayerNorm(dim)


def apply_rope(x_BHLD: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding on interleaved pairs (x[2i], x[2i+1]) with frequency theta^(-2i/d)."""
    L, Dh = x_BHLD.shape[-2:]
    inv_freq = 1.0 / theta ** (torch.arange(0, Dh, 2, dtype=torch.float32, device=x_BHLD.device) / Dh)
    angle_LH = torch.outer(torch.arange(L, dtype=torch.float32, device=x_BHLD.device), inv_freq)
    cos, sin = angle_LH.cos().to(x_BHLD.dtype), angle_LH.sin().to(x_BHLD.dtype)
    x1, x2 = x_BHLD[..., 0::2], x_BHLD[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, config: RaybioConfig):
        super().__init__()
        self.n_heads, self.theta = config.n_heads, config.rope_theta
        self.causal = config.objective == "ntp"
        self.wqkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.wo = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x_BLD: torch.Tensor, keep_BL: torch.Tensor | None) -> torch.Tensor:
        B, L, D = x_BLD.shape
        qkv = self.wqkv(x_BLD).view(B, L, 3, self.n_heads, D // self.n_heads)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
        q, k = apply_rope(q, self.theta), apply_rope(k, self.theta)
        if keep_BL is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:  # padded batch: no query attends to padding keys
            allowed = keep_BL[:, None, None, :].bool()
            if self.causal:
                allowed = allowed & torch.ones(L, L, dtype=torch.bool, device=x_BLD.device).tril()
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.wo(y.transpose(1, 2).reshape(B, L, D))


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(d_model, hidden, bias=False)
        self.w3 = nn.Linear(d_model, hidden, bias=False)
        self.w2 = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Router(nn.Module):
    """Top-k expert choice and gates: softmax, sigmoid or aux-free (sigmoid chosen with a bias)."""

    def __init__(self, d_model: int, moe: dict):
        super().__init__()
        self.moe = moe
        self.gate = nn.Linear(d_model, moe["num_experts"], bias=False)
        if moe["router"] == "aux_free":
            self.register_buffer("expert_bias_E", torch.zeros(moe["num_experts"]))

    def forward(self, x_TD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        moe, k = self.moe, self.moe["top_k"]
        logits_TE = F.linear(x_TD.float(), self.gate.weight.float())
        softmax = moe["router"] == "softmax"
        scores_TE = logits_TE.softmax(-1) if softmax else torch.sigmoid(logits_TE)
        choice_TE = scores_TE + self.expert_bias_E if moe["router"] == "aux_free" else scores_TE
        if moe.get("n_group"):
            choice_TE = self._best_groups_only(choice_TE, moe["n_group"], moe["topk_group"])
        experts_TK = choice_TE.topk(k, dim=-1).indices
        weights_TK = scores_TE.gather(-1, experts_TK)
        if moe["route_norm"]:
            weights_TK = weights_TK / weights_TK.sum(-1, keepdim=True)
        return weights_TK * moe["routed_scaling_factor"], experts_TK

    @staticmethod
    def _best_groups_only(choice_TE: torch.Tensor, n_group: int, topk_group: int) -> torch.Tensor:
        """Mask experts outside each token's best groups (group score: sum of its two best experts)."""
        T, E = choice_TE.shape
        grouped = choice_TE.view(T, n_group, E // n_group)
        group_score_TG = grouped.topk(min(2, E // n_group), dim=-1).values.sum(-1)
        best_TG = group_score_TG.topk(topk_group, dim=-1).indices
        keep_TG = torch.zeros_like(group_score_TG, dtype=torch.bool).scatter_(1, best_TG, True)
        return grouped.masked_fill(~keep_TG[..., None], float("-inf")).view(T, E)


class Experts(nn.Module):
    """E SwiGLU experts as stacked weights: expert e computes (silu(x w1[e]) * x w3[e]) w2[e]."""

    def __init__(self, num_experts: int, d_model: int, hidden: int):
        super().__init__()
        self.w1_EDH = nn.Parameter(torch.empty(num_experts, d_model, hidden))
        self.w3_EDH = nn.Parameter(torch.empty(num_experts, d_model, hidden))
        self.w2_EHD = nn.Parameter(torch.empty(num_experts, hidden, d_model))

    def expert(self, e: int, x_ND: torch.Tensor) -> torch.Tensor:
        return (F.silu(x_ND @ self.w1_EDH[e]) * (x_ND @ self.w3_EDH[e])) @ self.w2_EHD[e]


class MoE(nn.Module):
    """Routed experts (dropless unless a capacity factor was trained) plus optional shared experts."""

    def __init__(self, config: RaybioConfig):
        super().__init__()
        moe = config.moe
        hidden = moe.get("expert_hidden") or config.ffn_hidden
        self.moe = moe
        self.router = Router(config.d_model, moe)
        self.experts = Experts(moe["num_experts"], config.d_model, hidden)
        shared = moe.get("num_shared_experts", 0)
        self.shared = SwiGLU(config.d_model, shared * hidden) if shared else None

    def forward(self, x_BLD: torch.Tensor) -> torch.Tensor:
        B, L, D = x_BLD.shape
        x_TD = x_BLD.reshape(-1, D)
        weights_TK, experts_TK = self.router(x_TD)
        T, K = experts_TK.shape
        capacity = None
        if self.moe.get("capacity_factor") is not None:
            capacity = math.ceil(self.moe["capacity_factor"] * T * K / self.moe["num_experts"])
        flat_S, gate_S = experts_TK.reshape(-1), weights_TK.reshape(-1)
        y_TD = torch.zeros(T, D, dtype=torch.float32, device=x_BLD.device)
        for e in range(self.moe["num_experts"]):
            slots = (flat_S == e).nonzero().squeeze(-1)  # in token order
            if capacity is not None:
                slots = slots[:capacity]  # later tokens overflow this expert
            if slots.numel():
                tokens = slots // K
                out = self.experts.expert(e, x_TD[tokens]).float() * gate_S[slots, None]
                y_TD.index_add_(0, tokens, out)
        y_TD = y_TD.to(x_BLD.dtype)
        if self.shared is not None:
            y_TD = y_TD + self.shared(x_TD)
        return y_TD.view(B, L, D)


class ModalFilter(nn.Module):
    """h_c(t) = Re Σ_s r_cs·exp(λ_cs·t), λ = -softplus(decay) + i·freq, r = residue_re + i·residue_im."""

    def __init__(self, channels: int, num_modes: int):
        super().__init__()
        self.decay_CS = nn.Parameter(torch.empty(channels, num_modes))
        self.freq_CS = nn.Parameter(torch.empty(channels, num_modes))
        self.residue_re_CS = nn.Parameter(torch.empty(channels, num_modes))
        self.residue_im_CS = nn.Parameter(torch.empty(channels, num_modes))

    def taps(self, L: int) -> torch.Tensor:
        """(C, L) fp32 taps, summed mode by mode in fp64."""
        t_L = torch.arange(L, dtype=torch.float64, device=self.decay_CS.device)
        poles_CS = torch.complex(-F.softplus(self.decay_CS.double()), self.freq_CS.double())
        residues_CS = torch.complex(self.residue_re_CS.double(), self.residue_im_CS.double())
        h_CL = torch.zeros(poles_CS.shape[0], L, dtype=torch.float64, device=t_L.device)
        for s in range(poles_CS.shape[1]):
            h_CL += (residues_CS[:, s, None] * torch.exp(poles_CS[:, s, None] * t_L)).real
        return h_CL.float()


class HyenaLite(nn.Module):
    """z = causal short conv(W_in x); x2, x1, v = split(z); y = x2 ⊙ (h ∗ (x1 ⊙ v) + ω ⊙ x1 ⊙ v); W_o y."""

    def __init__(self, config: RaybioConfig):
        super().__init__()
        D, hy = config.d_model, config.hyena
        self.causal = config.objective == "ntp"
        self.num_filters = D // (hy.get("filter_groups") or 1)
        self.in_proj = nn.Linear(D, 3 * D, bias=False)
        self.short_conv_CK = nn.Parameter(torch.empty(3 * D, hy["short_conv"]))
        self.omega = nn.Parameter(torch.ones(D))
        self.filter = ModalFilter(self.num_filters * (1 if self.causal else 2), hy["num_modes"])
        self.wo = nn.Linear(D, D, bias=False)

    def kernel(self, L: int) -> torch.Tensor:
        """Length-2L kernel per filter: lags 0..L-1 first; for MLM, lags -1..-(L-1) wrap to the tail."""
        h = self.filter.taps(L)
        if self.causal:
            return torch.cat([h, h.new_zeros(h.shape[0], L)], dim=-1)
        fwd, bwd = h.chunk(2, dim=0)
        return torch.cat([fwd, fwd.new_zeros(fwd.shape[0], 1), bwd[:, : L - 1].flip(-1)], dim=-1)

    def forward(self, x_BLD: torch.Tensor, keep_BL: torch.Tensor | None) -> torch.Tensor:
        B, L, D = x_BLD.shape
        K = self.short_conv_CK.shape[1]
        z_BCL = self.in_proj(x_BLD).transpose(1, 2)
        w = self.short_conv_CK.to(z_BCL.dtype)[:, None, :]
        z_BCL = F.conv1d(F.pad(z_BCL, (K - 1, 0)), w, groups=z_BCL.shape[1])  # causal depthwise
        x2, x1, v = z_BCL.chunk(3, dim=1)
        u_BDL = (x1 * v).float()
        if keep_BL is not None:  # padding must not leak into real positions through the long conv
            u_BDL = u_BDL * keep_BL[:, None, :].to(u_BDL.dtype)
        n_filters = self.num_filters  # channel d uses filter d // (D / n_filters)
        u_spec = torch.fft.rfft(u_BDL, n=2 * L).view(B, n_filters, D // n_filters, L + 1)
        k_spec = torch.fft.rfft(self.kernel(L))
        hu_BDL = torch.fft.irfft((u_spec * k_spec[:, None]).view(B, D, L + 1), n=2 * L)[..., :L]
        y_BDL = hu_BDL + self.omega[:, None].float() * u_BDL
        return self.wo((x2 * y_BDL.to(x2.dtype)).transpose(1, 2))


class Block(nn.Module):
    """Pre-norm residual block: x + mixer(norm1(x)), then x + ffn(norm2(x))."""

    def __init__(self, kind: str, config: RaybioConfig):
        super().__init__()
        self.norm1 = make_norm(config.norm, config.d_model)
        self.norm2 = make_norm(config.norm, config.d_model)
        self.mixer = HyenaLite(config) if kind == "H" else Attention(config)
        self.ffn = MoE(config) if kind == "A" else SwiGLU(config.d_model, config.ffn_hidden)

    def forward(self, x_BLD: torch.Tensor, keep_BL: torch.Tensor | None) -> torch.Tensor:
        x_BLD = x_BLD + self.mixer(self.norm1(x_BLD), keep_BL)
        return x_BLD + self.ffn(self.norm2(x_BLD))


class RaybioPreTrainedModel(PreTrainedModel):
    config_class = RaybioConfig
    base_model_prefix = "model"
    _no_split_modules = ("Block",)

    def _init_weights(self, module: nn.Module) -> None:
        # Only heads absent from the export (e.g. a new classifier) are initialised here.
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _keep_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """None when nothing is padded (the unmasked path is exactly raybio's)."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask


class RaybioModel(RaybioPreTrainedModel):
    """The backbone: final-norm hidden states (B, L, D)."""

    def __init__(self, config: RaybioConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(kind, config) for kind in config.blocks)
        self.norm = make_norm(config.norm, config.d_model)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed = value

    def forward(self, input_ids=None, attention_mask=None, return_dict=None, **kwargs) -> BaseModelOutput:
        if input_ids.shape[1] > self.config.max_seq_len:
            raise ValueError(f"sequence of {input_ids.shape[1]} tokens exceeds max_seq_len={self.config.max_seq_len}")
        keep_BL = _keep_mask(attention_mask)
        x_BLD = self.embed(input_ids)
        for block in self.blocks:
            x_BLD = block(x_BLD, keep_BL)
        return BaseModelOutput(last_hidden_state=self.norm(x_BLD))


class _WithLMHead(RaybioPreTrainedModel):
    def __init__(self, config: RaybioConfig):
        super().__init__(config)
        self.model = RaybioModel(config)
        self.head = None if config.tie_embeddings else nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def lm_logits(self, h_BLD: torch.Tensor) -> torch.Tensor:
        weight = self.model.embed.weight if self.head is None else self.head.weight
        return F.linear(h_BLD, weight) * self.config.logit_scale


class RaybioForMaskedLM(_WithLMHead):
    """Logits at every position; loss = cross-entropy over positions whose label is not -100."""

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **kwargs):
        logits = self.lm_logits(self.model(input_ids, attention_mask).last_hidden_state)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits)


class RaybioForCausalLM(_WithLMHead):
    """Next-token logits; loss = cross-entropy of position t's logits against labels[t + 1]."""

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **kwargs):
        logits = self.lm_logits(self.model(input_ids, attention_mask).last_hidden_state)
        loss = None
        if labels is not None:
            shifted = logits[:, :-1].float().flatten(0, 1)
            loss = F.cross_entropy(shifted, labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)


class RaybioForSequenceClassification(RaybioPreTrainedModel):
    """Mean of the final hidden states over non-padding tokens, then a linear head.

    Loss: mean squared error for `num_labels == 1` (regression), else cross-entropy.
    """

    def __init__(self, config: RaybioConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = RaybioModel(config)
        self.score = nn.Linear(config.d_model, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **kwargs):
        h_BLD = self.model(input_ids, attention_mask).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        keep_BL1 = attention_mask[..., None].to(h_BLD.dtype)
        pooled_BD = (h_BLD * keep_BL1).sum(1) / keep_BL1.sum(1).clamp_min(1)
        logits = self.score(pooled_BD)
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                loss = F.cross_entropy(logits.float(), labels.long())
        return SequenceClassifierOutput(loss=loss, logits=logits)
