"""Fine-tune / probe protocols on a tiny trained checkpoint; early stopping; seeds; retrieval and its baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import save_tiny_checkpoint
from torch import nn

from raybio.data.validate import InputError
from raybio.evaluate import backbone as bb
from raybio.evaluate.protocols import EvalConfig, Features, Loader, adamw, finetune, fit, probe, val_loss
from raybio.evaluate.retrieval import composition, embed_pairs, retrieve
from raybio.evaluate.task_types import RetrievalTask
from raybio.evaluate.tasks import load_task


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One thread, as each Ray run uses: on a shared 2-core machine, spinning OpenMP threads cost 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def promoters():
    return load_task("gb_nontata_promoters")


def test_early_stopping_keeps_the_validation_best_epoch():
    # Validation labels are the opposite of train labels: validation loss rises as soon as
    # the model learns, so the best epoch is an early one and training stops `patience` later.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    train, val = Loader(y, 32, feats=x), Loader(1 - y, 32, feats=x)
    torch.manual_seed(0)
    module = nn.Linear(4, 2)
    result = fit(module, train, val, epochs=30, patience=4, opt=adamw(module, 0.05, 0.0), seed=0)
    assert result.best_epoch == int(np.argmin(result.val_losses)) + 1
    assert len(result.val_losses) == result.best_epoch + 4 < 30
    assert val_loss(module, val) == pytest.approx(min(result.val_losses), rel=1e-5)  # best weights restored


def test_finetune_of_tiny_checkpoint_beats_chance_on_promoters(tiny_checkpoint, promoters):
    model, tok = bb.load(tiny_checkpoint)
    out = finetune(promoters, model, tok, EvalConfig(epochs=2, max_train=800), 3e-4, seed=0)
    majority = np.bincount(promoters.test.labels).max() / len(promoters.test)
    assert out["accuracy"] > majority + 0.05 and out["auroc"] > 0.65
    assert (out["n_train"], out["n_val"], out["n_test"]) == (720, 80, 1807)


def test_probe_freezes_the_backbone_and_same_seed_reproduces(tiny_checkpoint, promoters):
    cfg = EvalConfig(epochs=2, max_train=300)
    runs = []
    model, tok = bb.load(tiny_checkpoint)
    before = [p.detach().clone() for p in model.parameters()]
    feats = Features(model, tok, promoters, cfg)  # computed once, shared by every seed
    for seed in (0, 0, 1):
        runs.append(probe(feats, cfg, 1e-3, seed))
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    np.testing.assert_array_equal(runs[0]["prob"], runs[1]["prob"])
    assert not np.array_equal(runs[0]["prob"], runs[2]["prob"])


def test_dna_only_checkpoint_on_a_protein_task_says_why(tmp_path):
    from helpers import TINY_EVAL as TINY

    ckpt = save_tiny_checkpoint(tmp_path / "dna", steps=1, overrides={**TINY, "data": {"tokenizer": {"kind": "kmer"}}})
    model, tok = bb.load(ckpt)
    with pytest.raises(InputError, match=r"task protein_family: the checkpoint's tokenizer cannot encode it"):
        finetune(load_task("protein_family"), model, tok, EvalConfig(epochs=1), 3e-4, seed=0)


def test_trained_projector_retrieves_genes_proteins_and_shuffled_pairs_sit_near_chance(tiny_checkpoint):
    full = load_task("gene_protein_retrieval")
    n = 1200
    task = RetrievalTask(full.name, full.genes[:n], full.proteins[:n], full.ids[:n])
    model, tok = bb.load(tiny_checkpoint)
    genes, proteins = embed_pairs(task, model, tok)
    out = {c: retrieve(genes, proteins, 0, c, train_fraction=0.2) for c in ("projector", "shuffled_pairs")}
    chance_at_10 = 10 / out["projector"]["n_test"]
    assert out["projector"]["recall_at_10"] > 10 * chance_at_10
    assert out["shuffled_pairs"]["recall_at_10"] < 4 * chance_at_10, out["shuffled_pairs"]


def test_codon_to_amino_acid_composition_solves_ecoli_retrieval():
    # Mean-pooled in-frame 3-mer tokens of a CDS are its codon counts: a linear map from codon to
    # amino-acid frequencies, fitted on the same 5 % of pairs as the projector, is the bar to clear.
    out = composition(load_task("gene_protein_retrieval"), seed=0)
    assert out["n_train"] == 207 and out["recall_at_1"] >= 0.95


def test_routing_change_reports_per_layer_js_before_and_after_finetuning(tmp_path):
    from helpers import TINY_EVAL as TINY

    from raybio.evaluate.routing_change import routing_change

    moe = {**TINY, "model": {**TINY["model"], "pattern": "A", "moe": {"num_experts": 4, "top_k": 1}}}
    ckpt = save_tiny_checkpoint(tmp_path / "moe", steps=5, overrides=moe)
    tasks = [load_task("species"), load_task("gb_nontata_promoters")]
    df = routing_change(str(ckpt), tasks, EvalConfig(epochs=1, max_train=200))
    assert list(df["layer"]) == [0, 1]
    assert ((df[["js_before", "js_after"]] >= 0) & (df[["js_before", "js_after"]] <= np.log(2))).all().all()
    assert (df["js_before"] != df["js_after"]).any()  # fine-tuning moved routing
