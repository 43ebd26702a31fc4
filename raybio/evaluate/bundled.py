"""The bundled downstream tasks (data under `raybio/evaluate/data/` and `raybio/data/bundled/`).

- Genomic Benchmarks promoters / enhancers (the official test split re-split 80/20).
- `species`: genome of origin of 256 bp windows, from bundled genomes the evaluated checkpoints
  did not pretrain on (`exclude_sha256`), split by 20 kb position blocks.
- `protein_family`: Pfam Pkinase / fn3 / globin, split by sequence-identity cluster and cropped
  to class-independent lengths, so neither a near-identical sequence nor length gives the answer.
- `gene_protein_retrieval` (E. coli, the pretraining genome of the committed checkpoints) and
  `gene_protein_retrieval_saureus` (S. aureus genes called by Prodigal: a genome none of them saw).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.model_selection import StratifiedGroupKFold

from raybio.data.fasta import read_fasta
from raybio.data.tokenizers import reverse_complement
from raybio.evaluate.splits import Split
from raybio.evaluate.task_types import (
    ClassificationTask,
    RetrievalTask,
    Task,
    _labelled_task,
    _read_csv,
    _split_from_frame,
    check_task,
    load_fasta_task,
)

DATA = Path(__file__).parent / "data"
BUNDLED = Path(__file__).parents[1] / "data" / "bundled"
GB_NOTE = (
    "Genomic Benchmarks official *test* split re-split 80/20 (the official train split is not bundled): "
    "published numbers are context, not like-for-like"
)


@functools.cache
def file_sha256(path: str) -> str:
    """sha256 of a file's stored bytes (what a corpus manifest records per source file)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _gb(task: str) -> Callable[[frozenset[str]], Task]:
    def load(exclude_sha256: frozenset[str] = frozenset()) -> Task:
        parts = []
        for split in ("train", "test"):
            path = DATA / f"{task}_{split}.csv.gz"
            parts.append(_split_from_frame(_read_csv(path), path))
        out = _labelled_task(task, *parts, integer=True, source=str(DATA / task), note=GB_NOTE)
        out.sources = tuple(str(DATA / f"{task}_{s}.csv.gz") for s in ("train", "test"))
        return out

    return load


# ------------------------------------------------------------------------------------- species

SPECIES_GENOMES = {
    "E. coli": BUNDLED / "ecoli_K12_MG1655_NC_000913.2.fa.gz",
    "S. aureus": DATA / "saureus_USA300_FPR3757_CP000255-CP000258.fa.gz",
    "C. diphtheriae": DATA / "cdiphtheriae_NCTC11397_NZ_LN831026.1.fa.gz",
    "human chr22": BUNDLED / "human_chr22_20-21Mb_GRCh37.fa.gz",
    "phage lambda": BUNDLED / "lambda_phage_NC_001416.1.fa",
    "phage phiX174": BUNDLED / "phiX174_NC_001422.1.fa",
}
SPECIES_WINDOW, SPECIES_BLOCK = 256, 20_000
SPECIES_PER_GENOME = {"train": 500, "test": 125}  # downsampled so a fine-tune takes seconds, not hours


def _genome_windows(path: Path, window: int, block: int) -> pd.DataFrame:
    rows = []
    for rec in read_fasta(path):
        for b0 in range(0, len(rec.seq) - window + 1, block):
            for start in range(b0, min(b0 + block, len(rec.seq)) - window + 1, window):
                seq = rec.seq[start : start + window]
                if "N" not in seq:
                    rows.append((rec.id, start, f"{path.name}|{rec.id}|{b0}", seq))
    return pd.DataFrame(rows, columns=["record", "start", "block", "sequence"])


def species_windows(
    genomes: dict[str, Path] = SPECIES_GENOMES,
    window: int = SPECIES_WINDOW,
    block: int = SPECIES_BLOCK,
    per_genome: dict[str, int] = SPECIES_PER_GENOME,
    seed: int = 0,
) -> pd.DataFrame:
    """Non-overlapping N-free windows, one row each: genome, record, start, block id, split, label.

    Each record is cut into `block`-bp blocks; 20 % of a genome's blocks (at least one) are
    test, the rest train (seeded), and windows tile inside their block, so no window of one
    split overlaps a window of another; `block` is also the group used to carve validation.
    A genome with fewer than two blocks cannot be in both splits and is left out. Windows are
    then downsampled to `per_genome[split]` per genome.
    """
    rng = np.random.default_rng(seed)
    frames, label = [], 0
    for genome, path in genomes.items():
        df = _genome_windows(path, window, block)
        blocks = df["block"].unique()
        if len(blocks) < 2:
            continue
        test_blocks = set(rng.permutation(blocks)[: max(1, round(0.2 * len(blocks)))])
        df["split"] = np.where(df["block"].isin(test_blocks), "test", "train")
        df["genome"], df["label"] = genome, label
        label += 1
        for split, n in per_genome.items():
            part = df[df["split"] == split]
            frames.append(part.iloc[np.sort(rng.choice(len(part), min(n, len(part)), replace=False))])
    return pd.concat(frames, ignore_index=True)


def _species(exclude_sha256: frozenset[str] = frozenset()) -> Task:
    genomes = {g: p for g, p in SPECIES_GENOMES.items() if file_sha256(str(p)) not in exclude_sha256}
    left_out = [g for g in SPECIES_GENOMES if g not in genomes]
    df = species_windows(genomes)
    names = list(dict.fromkeys(df["genome"]))
    block_ids = pd.factorize(df["block"])[0]
    splits = {}
    for split in ("train", "test"):
        part = df["split"] == split
        where = zip(df["genome"][part], df["record"][part], df["start"][part], strict=True)
        rows = [f"species {g} {r}:{s}" for g, r, s in where]
        splits[split] = Split(
            list(df["sequence"][part]), df["label"][part].to_numpy(), block_ids[part.to_numpy()], rows
        )
    too_small = [g for g in genomes if g not in names]
    note = (
        f"{SPECIES_WINDOW} bp windows from {', '.join(names)}; split by {SPECIES_BLOCK // 1000} kb position blocks; "
        f"downsampled to {SPECIES_PER_GENOME['train']}/{SPECIES_PER_GENOME['test']} train/test windows per genome"
        + (f"; left out as pretraining sources: {', '.join(left_out)}" if left_out else "")
        + (f"; left out with fewer than two blocks: {', '.join(too_small)}" if too_small else "")
    )
    task = ClassificationTask("species", "dna", names, splits["train"], splits["test"], note)
    task.sources = tuple(str(genomes[g]) for g in names)
    return check_task(task, "species")


# ------------------------------------------------------------------------------ protein family

PROTEIN_FAMILIES = DATA / "protein_families_pkinase_fn3_globin.fasta.gz"
# Sequences whose 3-mer sets share >= 10 % (Jaccard) are one cluster (single linkage). No pair from
# two different families reaches 0.06 on the bundled set, so a cluster never spans two families.
CLUSTER_K, CLUSTER_JACCARD = 3, 0.10
# Every sequence is cropped to a length drawn uniformly from this range (at most the shortest
# family's shortest member, fn3 75 aa) at a random offset: length says nothing about the family.
CROP_LENGTHS = (50, 75)


def identity_clusters(sequences: list[str], k: int = CLUSTER_K, min_jaccard: float = CLUSTER_JACCARD) -> np.ndarray:
    """Cluster ids (single linkage on k-mer-set Jaccard): sequences at >= `min_jaccard` share a cluster."""
    X = CountVectorizer(analyzer="char", ngram_range=(k, k), lowercase=False, binary=True).fit_transform(sequences)
    links = linkage(pdist(X.toarray().astype(bool), "jaccard"), "single")
    return fcluster(links, t=1 - min_jaccard, criterion="distance")


def cluster_split(labels: np.ndarray, clusters: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices, about 80/20 and stratified by label, with every cluster on one side."""
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    return next(folds.split(np.zeros(len(labels)), labels, clusters))


def length_matched_crops(sequences: list[str], seed: int = 0, lengths: tuple[int, int] = CROP_LENGTHS) -> list[str]:
    """Each sequence cut to a length drawn from `lengths` (independent of its class) at a random offset."""
    rng = np.random.default_rng(seed)
    out = []
    for seq in sequences:
        n = min(len(seq), int(rng.integers(lengths[0], lengths[1] + 1)))
        start = int(rng.integers(0, len(seq) - n + 1))
        out.append(seq[start : start + n])
    return out


def _protein_family(exclude_sha256: frozenset[str] = frozenset()) -> Task:
    whole = load_fasta_task(PROTEIN_FAMILIES, "protein_family", key="family")
    seqs = whole.train.sequences + whole.test.sequences
    rows = (whole.train.rows or []) + (whole.test.rows or [])
    labels = np.concatenate([whole.train.labels, whole.test.labels])
    clusters = identity_clusters(seqs)
    tr, te = cluster_split(labels, clusters)
    cropped = length_matched_crops(seqs)
    pick = lambda idx: Split([cropped[i] for i in idx], labels[idx], clusters[idx], [rows[i] for i in idx])  # noqa: E731
    note = (
        f"Pfam Pkinase / fn3 / globin, {len(seqs)} sequences in {len(set(clusters))} identity clusters "
        f"({CLUSTER_K}-mer Jaccard >= {CLUSTER_JACCARD}, single linkage); no cluster in both train and test; "
        f"every sequence cropped to {CROP_LENGTHS[0]}-{CROP_LENGTHS[1]} aa at random (length carries no class)"
    )
    task = ClassificationTask(
        "protein_family", "protein", whole.classes, pick(tr), pick(te), note, (str(PROTEIN_FAMILIES),)
    )
    return check_task(task, "protein_family")


# ------------------------------------------------------------------------------------ retrieval

ECOLI_PROTEINS = BUNDLED / "ecoli_mg1655_proteins.faa.gz"


def _gene_protein(exclude_sha256: frozenset[str] = frozenset()) -> Task:
    """E. coli CDS (cut from the bundled genome at the proteins' header coordinates) and their proteins."""
    genome = next(iter(read_fasta(SPECIES_GENOMES["E. coli"]))).seq
    genes, proteins, ids = [], [], []
    for rec in read_fasta(ECOLI_PROTEINS, "protein"):
        m = re.search(r":(\d+)-(\d+)\(([+-])\)", rec.description)
        cds = genome[int(m[1]) - 1 : int(m[2])]
        genes.append(cds if m[3] == "+" else reverse_complement(cds))
        proteins.append(rec.seq)
        ids.append(rec.id)
    note = "4,143 E. coli K-12 MG1655 CDS / protein pairs; projector trained on 5 % of pairs, tested on the rest"
    sources = (str(SPECIES_GENOMES["E. coli"]), str(ECOLI_PROTEINS))
    return RetrievalTask("gene_protein_retrieval", genes, proteins, ids, note, sources)


def _gene_protein_saureus(exclude_sha256: frozenset[str] = frozenset()) -> Task:
    """S. aureus chromosome genes called by Prodigal (pyrodigal, trained on the chromosome) and their translations."""
    import pyrodigal

    path = SPECIES_GENOMES["S. aureus"]
    chromosome = next(iter(read_fasta(path))).seq
    finder = pyrodigal.GeneFinder()
    finder.train(chromosome.encode())
    genes, proteins, ids = [], [], []
    for i, gene in enumerate(finder.find_genes(chromosome.encode())):
        if gene.partial_begin or gene.partial_end:
            continue
        genes.append(gene.sequence())
        proteins.append(gene.translate(translation_table=11).rstrip("*"))
        ids.append(f"saureus_gene{i:04d}")
    note = (
        f"{len(genes):,} S. aureus USA300 chromosome genes called by Prodigal (pyrodigal, code 11) and their "
        "translations: a genome the evaluated checkpoints did not pretrain on; projector trained on 5 % of pairs"
    )
    return RetrievalTask("gene_protein_retrieval_saureus", genes, proteins, ids, note, (str(path),))


TASKS: dict[str, Callable[[frozenset[str]], Task]] = {
    "gb_nontata_promoters": _gb("gb_nontata_promoters"),
    "gb_enhancers_cohn": _gb("gb_enhancers_cohn"),
    "species": _species,
    "protein_family": _protein_family,
    "gene_protein_retrieval": _gene_protein,
    "gene_protein_retrieval_saureus": _gene_protein_saureus,
}
