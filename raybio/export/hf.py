"""Export a raybio checkpoint as a Hugging Face model folder that loads with `trust_remote_code=True`.

The folder holds `config.json` (`model_type: raybio`, `auto_map` to the classes below),
`model.safetensors`, the remote code `configuration_raybio.py` / `modeling_raybio.py` (copied
from `hf_template/`; torch and transformers only), the tokenizer as a
`PreTrainedTokenizerFast` (`tokenizer.json`, `tokenizer_config.json`, special tokens) and a
short model card. Parameter names are raybio's under the `model.` prefix.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from raybio.data.validate import InputError
from raybio.export.tokenizer import hf_tokenizers
from raybio.models.blocks import has_experts

TEMPLATE = Path(__file__).parent / "hf_template"
CODE_FILES = ("configuration_raybio.py", "modeling_raybio.py")
AUTO_MAP = {
    "AutoConfig": "configuration_raybio.RaybioConfig",
    "AutoModel": "modeling_raybio.RaybioModel",
    "AutoModelForMaskedLM": "modeling_raybio.RaybioForMaskedLM",
    "AutoModelForCausalLM": "modeling_raybio.RaybioForCausalLM",
    "AutoModelForSequenceClassification": "modeling_raybio.RaybioForSequenceClassification",
}
# Everything the exported routers read; the other MoE fields only shape training.
MOE_FIELDS = (
    "num_experts",
    "top_k",
    "router",
    "routed_scaling_factor",
    "n_group",
    "topk_group",
    "num_shared_experts",
    "capacity_factor",
)


def load_raybio(checkpoint: str | Path):
    """(BioLM, tokenizer) of a checkpoint: the one place export reads raybio checkpoints."""
    from raybio.models.pretrained import load_pretrained

    try:
        pretrained = load_pretrained(checkpoint)
    except (FileNotFoundError, ValueError) as err:  # not a checkpoint, or files it cannot read
        raise InputError(f"cannot export {checkpoint}: {err}") from None
    return pretrained.model, pretrained.tokenizer


def hf_config_fields(cfg, vocab_size: int) -> dict:
    """`RaybioConfig` keyword arguments for a raybio `ModelConfig` and its vocabulary."""
    from raybio.models.mup import width_mult

    if "H" in cfg.blocks and cfg.hyena.filter != "modal":
        raise InputError(
            f"export supports HyenaLite's modal filter only; this model has hyena.filter={cfg.hyena.filter!r}"
        )
    moe = {f: getattr(cfg.moe, f) for f in MOE_FIELDS}
    moe["expert_hidden"] = cfg.moe.expert_hidden or cfg.ffn_hidden
    moe["route_norm"] = cfg.moe.renormalises_gates  # resolved: the exported router needs no default rule
    return {
        "vocab_size": vocab_size,
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "ffn_hidden": cfg.ffn_hidden,
        "blocks": cfg.blocks,
        "objective": cfg.objective,
        "norm": cfg.norm,
        "max_seq_len": cfg.max_seq_len,
        "rope_theta": cfg.rope_theta,
        "tie_embeddings": cfg.tie_embeddings,
        "logit_scale": 1 / width_mult(cfg),  # µP multiplies the logits by 1/m (raybio/models/mup.py)
        "moe": moe if has_experts(cfg.blocks) else {},
        "hyena": (
            {
                "num_modes": cfg.hyena.num_modes,
                "filter_groups": cfg.hyena.filter_groups,
                "short_conv": cfg.hyena.short_conv,
            }
            if "H" in cfg.blocks
            else {}
        ),
    }


def hf_state_dict(model) -> dict[str, torch.Tensor]:
    """raybio's state dict as the HF classes name it; a tied head is stored once, as the embedding."""
    out = {}
    for name, t in model.state_dict().items():
        if name == "head.weight":
            if not model.cfg.tie_embeddings:
                out[name] = t
            continue
        out[f"model.{name}"] = t
    return {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in out.items()}


SPECIAL_TOKENS_MAP = {
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "cls_token": "<cls>",
    "sep_token": "<sep>",
    "mask_token": "<mask>",
    "bos_token": "<bos>",
    "eos_token": "<eos>",
}


def _write_tokenizer(tok, out: Path, max_len: int) -> None:
    from transformers import PreTrainedTokenizerFast

    for sub, hf in hf_tokenizers(tok).items():
        folder = out / sub if sub else out
        fast = PreTrainedTokenizerFast(
            tokenizer_object=hf,
            model_max_length=max_len,
            model_input_names=["input_ids", "attention_mask"],
            **SPECIAL_TOKENS_MAP,
        )
        fast.save_pretrained(folder)
        # transformers 5 records its own backend class name, which transformers 4 cannot resolve;
        # PreTrainedTokenizerFast (and a special_tokens_map.json) load in both.
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text())
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config_file.write_text(json.dumps(config, indent=2) + "\n")
        (folder / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS_MAP, indent=2) + "\n")


def _model_card(cfg, tok, out: Path) -> None:
    head = "RaybioForCausalLM" if cfg.objective == "ntp" else "RaybioForMaskedLM"
    auto = "AutoModelForCausalLM" if cfg.objective == "ntp" else "AutoModelForMaskedLM"
    (out / "README.md").write_text(
        f"---\nlibrary_name: transformers\ntags: [raybio, biology]\n---\n# raybio {cfg.objective} model\n\n"
        f"Blocks `{cfg.blocks}` (D attention + SwiGLU, A attention + MoE, H HyenaLite), d_model {cfg.d_model}, "
        f"tokenizer `{tok.kind}`. Exported by `raybio export`; `{head}` and "
        "`RaybioForSequenceClassification` (mean pooling + linear head) load with remote code:\n\n"
        f"```python\nfrom transformers import AutoTokenizer, {auto}\n"
        f'model = {auto}.from_pretrained("DIR", trust_remote_code=True)\n'
        f'tokenizer = AutoTokenizer.from_pretrained("DIR")\n```\n'
    )


def export_hf(checkpoint: str | Path, out: str | Path, push_to_hub: str | None = None) -> Path:
    """Write the HF folder for `checkpoint` to `out`; with `push_to_hub`, upload it to that repo id."""
    try:
        from safetensors.torch import save_file

        from raybio.export.hf_template.configuration_raybio import RaybioConfig
    except ImportError as err:
        raise InputError(f"export needs transformers and safetensors ({err}); pip install 'raybio[hf]'") from None
    model, tok = load_raybio(checkpoint)
    cfg = model.cfg
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = RaybioConfig(**hf_config_fields(cfg, model.vocab_size))
    config.architectures = [f"RaybioFor{'CausalLM' if cfg.objective == 'ntp' else 'MaskedLM'}"]
    config.auto_map = AUTO_MAP
    config.save_pretrained(out)
    save_file(hf_state_dict(model), out / "model.safetensors", metadata={"format": "pt"})
    for name in CODE_FILES:
        shutil.copyfile(TEMPLATE / name, out / name)
    _write_tokenizer(tok, out, cfg.max_seq_len)
    _model_card(cfg, tok, out)
    if push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(push_to_hub, exist_ok=True)
        api.upload_folder(repo_id=push_to_hub, folder_path=str(out), commit_message="raybio export")
    return out
