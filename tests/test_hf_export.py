"""`raybio export --format hf`: the folder loads in plain transformers, without raybio, with raybio's logits.

One fresh interpreter (tests/hf_child.py, started by helpers.run_without_raybio) loads every
exported model with `Auto…from_pretrained(DIR, trust_remote_code=True)`, encodes a bundled
FASTA record with the exported tokenizer and fine-tunes a classifier with the HF Trainer.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import BUNDLED, record, run_without_raybio, token_batch, write_trained_checkpoint

from raybio.cli import main
from raybio.config import TokenizerConfig
from raybio.data.fasta import read_fasta
from raybio.export.hf import CODE_FILES, TEMPLATE, export_hf

pytest.importorskip("transformers")

DATA = Path(__file__).with_name("data")

# name -> (tiny-preset overrides, causal). "moe" is shaped like `make demo`'s checkpoints.
MODELS = {
    "moe": (["model.pattern=A", "model.moe.num_experts=8", "model.moe.top_k=1"], False),
    "dense": (
        [
            "model.pattern=D",
            "model.objective=ntp",
            "model.norm=layernorm",
            "model.tie_embeddings=false",
            "model.base_d_model=64",
        ],
        True,
    ),
    "hyena_moe": (
        [
            "model.pattern=AHHH",
            "model.moe.router=aux_free",
            "model.moe.n_group=4",
            "model.moe.topk_group=2",
            "model.moe.routed_scaling_factor=2.5",
            "model.moe.num_shared_experts=1",
            "model.moe.expert_hidden=128",
        ],
        False,
    ),
    "hybrid_causal": (
        [
            "model.pattern=AH",
            "model.n_layers=2",
            "model.objective=ntp",
            "model.moe.route_norm=false",
            "model.moe.capacity_factor=1.0",
            "model.hyena.filter_groups=4",
        ],
        True,
    ),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every model trained briefly, exported (the demo-shaped one through the CLI), run in the child."""
    root = tmp_path_factory.mktemp("hf")
    job: dict = {"models": {}, "tokenize": {}}
    ours = {}
    for name, (overrides, causal) in MODELS.items():
        ckpt = root / "ckpt" / name
        model, tok = write_trained_checkpoint(ckpt, overrides)
        out = root / "export" / name
        if name == "moe":
            main(["export", str(ckpt), "--format", "hf", "--out", str(out)])
        else:
            export_hf(ckpt, out)
        ids = token_batch(tok, 2, 256, offset=1000)
        hidden = []
        hook = model.norm.register_forward_hook(lambda mod, args, out, store=hidden: store.append(out))
        with torch.no_grad():
            ours[name] = model(ids).logits.numpy()
        hook.remove()
        ours[f"{name}_hidden"] = hidden[0].numpy()
        np.save(root / f"{name}_ids.npy", ids.numpy())
        job["models"][name] = {
            "dir": str(out),
            "causal": causal,
            "ids": str(root / f"{name}_ids.npy"),
            "logits_out": str(root / f"{name}_hf.npy"),
        }
    job["tokenize"]["lambda"] = {"dir": str(root / "export" / "moe"), "text": record()}
    backbone_out = root / "moe_backbone.npy"
    job["backbone"] = {"dir": job["models"]["moe"]["dir"], "ids": job["models"]["moe"]["ids"], "out": str(backbone_out)}
    genome = record()
    job["padding"] = {"dir": job["models"]["hyena_moe"]["dir"], "short": genome[:150], "long": genome[150:600]}
    job["finetune"] = {
        "dir": str(root / "export" / "moe"),
        "csv": str(DATA / "nontata_promoters_256.csv"),
        "out": str(root / "trainer"),
        "epochs": 2,
        "rows": 128,
    }
    answer = run_without_raybio(job, root)
    theirs = {name: np.load(spec["logits_out"]) for name, spec in job["models"].items()}
    theirs["moe_hidden"] = np.load(backbone_out)
    return {"root": root, "answer": answer, "ours": ours, "theirs": theirs}


def test_export_writes_config_weights_remote_code_and_tokenizer(exported):
    out = exported["root"] / "export" / "moe"
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", *CODE_FILES, "tokenizer.json", "tokenizer_config.json"} <= names
    assert "special_tokens_map.json" in names
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "raybio"
    assert config["auto_map"]["AutoModelForMaskedLM"] == "modeling_raybio.RaybioForMaskedLM"
    assert config["blocks"] == "AAAA" and config["moe"]["num_experts"] == 8


def test_remote_code_imports_nothing_but_torch_and_transformers():
    for name in CODE_FILES:
        tree = ast.parse((TEMPLATE / name).read_text())
        roots = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots.add(node.module.split(".")[0])
        assert roots <= {"__future__", "math", "torch", "transformers"}, (name, roots)


def test_the_loading_process_cannot_import_raybio(exported):
    answer = exported["answer"]
    assert answer["raybio_importable"] is False
    assert not any((Path(p) / "raybio").exists() for p in answer["sys_path"])
    assert all(m["module"].startswith("transformers_modules") for m in answer["models"].values())


@pytest.mark.parametrize("name", list(MODELS))
def test_transformers_logits_equal_raybios_in_fp32(exported, name):
    ours, theirs = exported["ours"][name], exported["theirs"][name]
    diff = float(np.abs(ours - theirs).max())
    print(f"\n[hf parity] {name}: max |logit difference| = {diff:.3g} over {ours.size} logits")
    assert ours.shape == theirs.shape
    assert diff < 1e-4


def test_automodel_gives_raybios_final_norm_hidden_states(exported):
    np.testing.assert_allclose(exported["theirs"]["moe_hidden"], exported["ours"]["moe_hidden"], rtol=0, atol=1e-5)


def test_sequence_classifier_ignores_right_padding(exported):
    padding = exported["answer"]["padding"]
    assert padding["pads"] > 0 and padding["max_diff"] < 1e-5, padding


def test_exported_tokenizer_encodes_a_fasta_record_to_raybios_ids(exported):
    meta = json.loads((exported["root"] / "ckpt" / "moe" / "config.json").read_text())
    tok = TokenizerConfig(**meta["experiment"]["data"]["tokenizer"]).build()
    assert (tok.kind, tok.k) == ("kmer", 3)
    assert exported["answer"]["tokens"]["lambda"] == tok.encode(record()).tolist()


def test_hf_trainer_fine_tunes_the_sequence_classifier_and_its_loss_falls(exported):
    ft = exported["answer"]["finetune"]
    assert len(ft["train_losses"]) == 16  # 128 rows / 16 per batch, 2 epochs
    assert all(np.isfinite(ft["train_losses"]))
    assert ft["eval_loss_after"] < ft["eval_loss_before"] - 0.01, ft


def _saved_and_loaded(tok, tmp_path):
    from transformers import AutoTokenizer

    from raybio.export.hf import _write_tokenizer

    _write_tokenizer(tok, tmp_path, 512)
    return AutoTokenizer.from_pretrained(tmp_path), tmp_path


def _dna_records():
    """Real records, plus one with N runs and lower case spliced into real sequence (the bundled genomes have none)."""
    lam = record()
    return [record("phiX174_NC_001422.1.fa"), lam, lam[:50] + "N" + lam[50:61].lower() + "NNNN" + lam[61:200] + "NN"]


@pytest.mark.parametrize("kind", ["kmer-1", "kmer-2", "kmer-3", "kmer-6", "nucleotide", "multiomic"])
def test_hf_dna_tokenizers_give_raybios_ids_on_bundled_records(tmp_path, kind):
    name, _, k = kind.partition("-")
    tok = TokenizerConfig(kind=name, k=int(k or 3)).build()
    hf, _ = _saved_and_loaded(tok, tmp_path)
    assert len(hf) == tok.vocab_size
    for seq in _dna_records():
        assert hf(seq, add_special_tokens=False)["input_ids"] == tok.encode(seq, "dna").tolist()


@pytest.mark.parametrize("kind", ["protein", "multiomic"])
def test_hf_protein_tokenizers_give_raybios_ids_on_bundled_proteins(tmp_path, kind):
    from transformers import AutoTokenizer

    tok = TokenizerConfig(kind=kind).build()
    _, folder = _saved_and_loaded(tok, tmp_path)
    hf = AutoTokenizer.from_pretrained(folder / "protein" if kind == "multiomic" else folder)
    proteins = read_fasta(BUNDLED / "ecoli_mg1655_proteins.faa.gz", "protein")
    for rec in [next(proteins) for _ in range(20)]:
        seq = rec.seq
        assert hf(seq, add_special_tokens=False)["input_ids"] == tok.encode(seq, "protein").tolist()


def test_hf_bpe_tokenizer_gives_raybios_ids(tmp_path):
    from raybio.data.bpe import BPETokenizer

    genome = record()
    tok = BPETokenizer.train([genome[i : i + 2000] for i in range(0, 40000, 2000)], "dna", vocab_size=256)
    hf, _ = _saved_and_loaded(tok, tmp_path)
    for seq in _dna_records():
        seq = seq.upper()  # raybio's BPE, like its HF form, is case-sensitive
        assert hf(seq, add_special_tokens=False)["input_ids"] == tok.encode(seq).tolist()


def test_export_refuses_the_implicit_hyena_filter_with_a_one_line_error(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    write_trained_checkpoint(ckpt, ["model.pattern=H", "model.n_layers=1", "model.hyena.filter=implicit"], steps=1)
    with pytest.raises(SystemExit, match="modal filter only"):
        main(["export", str(ckpt), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="not a raybio checkpoint"):
        main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "out2")])
