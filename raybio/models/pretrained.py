"""A trained model as files: what a checkpoint holds for inference, and the one way to load it.

Every checkpoint raybio writes (raybio/train/checkpoint.py) carries, beside the training state:

    model.pt         full weights (`BioLM.state_dict()`, experts gathered)
    config.json      {"experiment": the ExperimentConfig it was trained with, "tokenizer": its spec}
    tokenizer.json   the tokenizer itself (k-mer tables or a trained BPE), so the checkpoint
                     alone rebuilds model and tokenizer

`load_pretrained` is the entry point for everything that uses a trained model: `raybio embed`,
router anatomy, downstream evaluation and export (litgpt's `Config.from_checkpoint` idea).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from raybio.data import storage
from raybio.data.tokenizer_io import tokenizer_from_json
from raybio.data.tokenizers import Tokenizer
from raybio.models.config import ModelConfig
from raybio.models.model import BioLM

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class Pretrained:
    model: BioLM
    tokenizer: Tokenizer
    config: ModelConfig
    experiment: dict  # the full experiment config as trained (validate with raybio.config.ExperimentConfig)


def inference_files(experiment: dict, tokenizer: Tokenizer) -> dict[str, bytes]:
    """config.json and tokenizer.json of a checkpoint (the weights come from the engine)."""
    meta = {"experiment": experiment, "tokenizer": tokenizer.spec}
    return {CONFIG_FILE: json.dumps(meta, indent=2).encode(), TOKENIZER_FILE: tokenizer.to_json().encode()}


def read_tokenizer(uri: str | Path, s3=None) -> Tokenizer:
    """A checkpoint's tokenizer alone (tokenizer.json), without reading its weights."""
    path = storage.join(str(uri), TOKENIZER_FILE)
    if not storage.exists(path, s3):
        raise FileNotFoundError(f"{uri} is not a raybio checkpoint: {TOKENIZER_FILE} missing")
    return tokenizer_from_json(storage.read_bytes(path, s3).decode())


def load_pretrained(uri: str | Path, device: str | torch.device = "cpu", s3=None) -> Pretrained:
    """Model (eval mode, on `device`) and tokenizer from a checkpoint directory (local path or s3:// URI)."""
    uri = str(uri)
    missing = [f for f in (CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE) if not storage.exists(storage.join(uri, f), s3)]
    if missing:
        raise FileNotFoundError(
            f"{uri} is not a raybio checkpoint: {', '.join(missing)} missing "
            f"(a checkpoint directory holds {WEIGHTS_FILE}, {CONFIG_FILE} and {TOKENIZER_FILE})"
        )
    meta = json.loads(storage.read_bytes(storage.join(uri, CONFIG_FILE), s3))
    tokenizer = tokenizer_from_json(storage.read_bytes(storage.join(uri, TOKENIZER_FILE), s3).decode())
    cfg = ModelConfig.model_validate(meta["experiment"]["model"])
    model = BioLM(cfg, tokenizer.vocab_size)
    weights = torch.load(io.BytesIO(storage.read_bytes(storage.join(uri, WEIGHTS_FILE), s3)), map_location="cpu",
                         weights_only=True)  # fmt: skip
    model.load_state_dict(weights)
    return Pretrained(model.to(device).eval(), tokenizer, cfg, meta["experiment"])
