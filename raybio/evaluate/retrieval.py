"""Gene -> protein retrieval (OmniBioTE): a low-rank contrastive projector on frozen embeddings.

Each CDS and each protein is embedded (mean-pooled, frozen backbone). Two linear maps into a
shared `rank`-dimensional space are trained with a symmetric InfoNCE loss on `train_fraction`
of the pairs; each held-out gene then ranks all held-out proteins by cosine similarity.

What the projector must beat: `composition`, a ridge map from a gene's codon frequencies to
its protein's amino-acid frequencies fitted on the same training pairs (mean-pooled k = 3
tokens of a CDS are nearly its codon counts, so composition alone can solve the task), and
the same projector on an untrained backbone. `shuffled_pairs` (a projector trained on
mismatched pairs) is a sanity check that should sit at chance (recall@1 = 1/N).
"""

from __future__ import annotations

import itertools
import re
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler, normalize

from raybio.data.alphabet import PROTEIN_RESIDUES
from raybio.evaluate import backbone as bb
from raybio.evaluate.metrics import retrieval_metrics
from raybio.evaluate.task_types import RetrievalTask

CONTROLS = ("projector", "shuffled_pairs")
CODONS = ["".join(c) for c in itertools.product("ACGT", repeat=3)]


def retrieval_split(n: int, seed: int, train_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) pair indices of one seed; every retrieval model of that seed uses the same ones."""
    perm = np.random.default_rng(seed).permutation(n)
    n_train = max(2, round(train_fraction * n))
    return perm[:n_train], perm[n_train:]


def _frequencies(texts: list[str], vocabulary: list[str], analyzer) -> np.ndarray:
    counts = CountVectorizer(analyzer=analyzer, vocabulary=vocabulary, lowercase=False).transform(texts)
    return normalize(counts.astype(np.float64), norm="l1").toarray()


def composition(task: RetrievalTask, seed: int, train_fraction: float = 0.05) -> dict:
    """Genes rank proteins by cosine between ridge-predicted and actual amino-acid frequencies (centred)."""
    t0 = time.perf_counter()
    tr, te = retrieval_split(len(task.genes), seed, train_fraction)
    codons = _frequencies(task.genes, CODONS, lambda g: re.findall("...", g))
    residues = _frequencies(task.proteins, list(PROTEIN_RESIDUES), list)
    ridge = RidgeCV(alphas=np.logspace(-6, 0, 7)).fit(codons[tr], residues[tr])
    centre = residues[tr].mean(0)
    score = normalize(ridge.predict(codons[te]) - centre) @ normalize(residues[te] - centre).T
    return {**retrieval_metrics(score), "n_train": len(tr), "n_test": len(te), "seconds": time.perf_counter() - t0}


def embed_pairs(task: RetrievalTask, model, tokenizer, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Mean-pooled features of every gene and every protein (needs a DNA + protein tokenizer)."""
    out = []
    for seqs, modality in ((task.genes, "dna"), (task.proteins, "protein")):
        enc = bb.encode(tokenizer, seqs, modality, model.cfg.max_seq_len, f"task {task.name} ({modality})")
        out.append(bb.features(model, enc.ids, "mean", batch_size, tokenizer.pad_id))
    return out[0], out[1]


def retrieve(
    genes_ND: np.ndarray,
    proteins_ND: np.ndarray,
    seed: int,
    control: str = "projector",
    train_fraction: float = 0.05,
    rank: int = 32,
    steps: int = 300,
    temperature: float = 0.07,
) -> dict:
    """Recall@1/@10 and MRR of held-out genes retrieving their proteins among all held-out proteins."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed + 1)
    tr, te = retrieval_split(len(genes_ND), seed, train_fraction)
    g_scale, p_scale = StandardScaler().fit(genes_ND[tr]), StandardScaler().fit(proteins_ND[tr])
    g = torch.from_numpy(g_scale.transform(genes_ND).astype(np.float32))
    p = torch.from_numpy(p_scale.transform(proteins_ND).astype(np.float32))
    torch.manual_seed(seed)
    D = g.shape[1]
    w_g, w_p = (torch.nn.Parameter(torch.randn(D, rank) / D**0.5) for _ in range(2))
    partner = rng.permutation(tr) if control == "shuffled_pairs" else tr
    opt = torch.optim.Adam([w_g, w_p], lr=1e-2)
    target = torch.arange(len(tr))
    for _ in range(steps):
        zg, zp = F.normalize(g[tr] @ w_g, dim=1), F.normalize(p[partner] @ w_p, dim=1)
        logits = zg @ zp.T / temperature
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        score = (F.normalize(g[te] @ w_g, dim=1) @ F.normalize(p[te] @ w_p, dim=1).T).numpy()
    return {**retrieval_metrics(score), "n_train": len(tr), "n_test": len(te), "seconds": time.perf_counter() - t0}
