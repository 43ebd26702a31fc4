"""`raybio anatomy`: routing per modality of one MoE checkpoint, at its exact init and trained."""

import json

import torch
from helpers import write_inference_checkpoint

from raybio.cli import main
from raybio.config import ExperimentConfig
from raybio.models.model import BioLM


def test_anatomy_of_an_untrained_checkpoint_equals_its_init(multiomic_corpus, tmp_path, capsys):
    corpus = multiomic_corpus
    model_cfg = {"d_model": 32, "n_layers": 2, "n_heads": 2, "pattern": "A", "moe": {"num_experts": 4}}
    exp = ExperimentConfig.model_validate({"model": model_cfg, "data": corpus.cfg.model_dump(), "train": {"seed": 3}})
    torch.manual_seed(exp.train.seed)  # exactly the model the training loop would start from
    model = BioLM(exp.model, corpus.manifest.tokenizer.vocab_size)
    ckpt = write_inference_checkpoint(tmp_path / "ckpt", exp, model)
    main(["anatomy", str(ckpt), "--corpus", corpus.uri, "--out", str(tmp_path / "anatomy.json")])
    out = capsys.readouterr().out
    assert "routing divergence between dna and protein" in out
    anatomy = json.loads((tmp_path / "anatomy.json").read_text())
    assert anatomy["tags"] == ["dna", "protein"]
    assert set(anatomy["js_by_layer"]) == {"0", "1"}
    for layer, js in anatomy["js_by_layer"].items():  # untrained: trained == init, layer by layer
        assert abs(js - anatomy["init_js_by_layer"][layer]) < 1e-9
    assert abs(anatomy["js_change"]) < 1e-9
