"""Downstream tasks are checked against what the checkpoint pretrained on: same source file -> refused;
test rows found in the pretraining corpus -> flagged and scored apart."""

from __future__ import annotations

import numpy as np
from helpers import write_inference_checkpoint

from raybio.config import load_config
from raybio.data.fasta import read_fasta
from raybio.data.sources import resolve_source
from raybio.data.tokenizers import reverse_complement
from raybio.evaluate.seen import KmerIndex, checkpoint_corpus, overlap
from raybio.evaluate.tasks import load_task
from raybio.models.model import BioLM


def checkpoint_on(tmp_path, *sources: str) -> str:
    exp = load_config("tiny", overrides={"data": {"sources": list(sources), "tokenizer": {"kind": "multiomic"}}})
    path = tmp_path / "run" / "checkpoint_000001"
    write_inference_checkpoint(path, exp, BioLM(exp.model, exp.data.tokenizer.build().vocab_size))
    return str(path)


def test_a_task_drawn_from_a_pretraining_source_is_refused(tmp_path):
    ckpt = checkpoint_on(tmp_path, "bundled:ecoli", "bundled:ecoli_proteins")
    corpus = checkpoint_corpus(ckpt)  # no manifest here: checksums of the configured source files
    assert corpus.origin.startswith("config") and len(corpus.files) == 2
    index = KmerIndex.build(corpus)
    retrieval = overlap(load_task("gene_protein_retrieval"), corpus, index)
    assert retrieval.refused and "a pretraining source" in retrieval.reason()
    assert retrieval.seen_test.all()  # every E. coli gene is in the corpus, sequence by sequence too
    species_all = overlap(load_task("species"), corpus, index)
    assert species_all.refused  # E. coli windows are one of its classes
    species_unseen = overlap(load_task("species", corpus.sha256), corpus, index)
    assert not species_unseen.refused and "E. coli" not in load_task("species", corpus.sha256).classes


def test_test_rows_copied_from_the_corpus_are_flagged_on_either_strand(tmp_path):
    ckpt = checkpoint_on(tmp_path, "bundled:lambda")
    corpus = checkpoint_corpus(ckpt)
    index = KmerIndex.build(corpus)
    lam = next(iter(read_fasta(resolve_source("bundled:lambda")))).seq
    rng = np.random.default_rng(0)
    fresh = ["".join(rng.choice(list("ACGT"), 200)) for _ in range(2)]
    test = [lam[1000:1200], reverse_complement(lam[5000:5200]), *fresh]
    rows = [f"{s},{i % 2},test" for i, s in enumerate(test)] + [f"{s},{i % 2},train" for i, s in enumerate(fresh * 2)]
    path = tmp_path / "mixed.csv"
    path.write_text("sequence,label,split\n" + "\n".join(rows) + "\n")
    found = overlap(load_task(str(path)), corpus, index)
    assert found.same_files == [] and not found.refused
    assert found.seen_test.tolist() == [True, True, False, False]
