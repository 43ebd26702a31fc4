"""Data configs: where a corpus comes from, how it is tokenized, where its shards live."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from raybio.schema import Strict


class TokenizerConfig(Strict):
    """How sequences become token ids (docs/data.md lists the vocabularies)."""

    kind: Literal["kmer", "nucleotide", "protein", "bpe", "multiomic"] = "kmer"
    k: int = Field(3, ge=1, le=6, description="k-mer size (kmer, and the DNA part of multiomic)")
    vocab_size: int = Field(4096, ge=64, le=1 << 20, description="BPE vocabulary size (Omni-DNA uses 4096)")
    bpe_train_residues: int = Field(20_000_000, ge=1000, description="BPE trains on at most this many residues")

    def build(self):
        """Build the tokenizer this config names (BPE is trained during `raybio prepare`)."""
        from raybio.data.tokenizer_io import build_tokenizer

        return build_tokenizer(self)


class SourceConfig(Strict):
    """One corpus source: a path, glob, s3:// URI or bundled:<name>, and how to read it."""

    uri: str
    modality: Literal["auto", "dna", "protein"] = Field("auto", description="auto = detected from the residues")
    format: Literal["auto", "fasta", "csv"] = Field("auto", description="auto = csv/tsv by extension, else FASTA")
    sequence_column: str = "sequence"
    id_column: str | None = None
    label_column: str | None = "label"


class S3Config(Strict):
    """Object-store endpoint. Credentials come from the AWS variables or profile, never from configs."""

    endpoint_url: str | None = Field(None, description="default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL")
    region: str | None = None
    profile: str | None = None


class DataConfig(Strict):
    """Where the corpus comes from, how it is tokenized, and where its shards live."""

    sources: list[str | SourceConfig] = Field(default_factory=lambda: ["bundled:ecoli"])
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    seq_len: int = Field(512, ge=8, description="tokens per training window")
    val_fraction: float = Field(0.05, gt=0, lt=1)
    shards_dir: str | None = Field(None, description="prepared shards; default <storage>/corpus/<hash>")
    rows_per_shard: int = Field(2048, ge=1)
    mask_prob: float = Field(0.15, gt=0, lt=1)
    min_length: int = Field(1, ge=1, description="records shorter than this (residues) are rejected and counted")
    iupac_to_n: bool = Field(False, description="map IUPAC ambiguity codes to N (DNA) / X (protein)")
    on_invalid: Literal["error", "skip"] = Field("error", description="records with invalid characters")
    reverse_complement: bool = Field(False, description="add the reverse complement of DNA train blocks")
    pack: bool = Field(True, description="pack records into full windows; False = one record per window, padded")
    mix: dict[str, float] | None = Field(None, description="train modality weights, e.g. {dna: 0.7, protein: 0.3}")
    shuffle_buffer: int = Field(256, ge=0, description="rows in each worker's local shuffle buffer (0 = off)")
    # raybio/data/loader.py: "memory" reads the splits whole into every worker (batches are slices of one
    # array, the whole split reshuffled each epoch when shuffle_buffer > 0), "stream" streams them with
    # Ray Data, "auto" reads whole up to IN_MEMORY_MAX_BYTES (1 GiB) of train tokens and streams beyond.
    loader: Literal["auto", "memory", "stream"] = "auto"
    s3: S3Config = Field(default_factory=S3Config)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        from raybio.data.tokenizers import MODALITIES

        if self.mix is not None:
            bad = sorted(set(self.mix) - set(MODALITIES))
            if bad or not self.mix or any(w <= 0 for w in self.mix.values()):
                raise ValueError(f"mix {self.mix} must map modalities {list(MODALITIES)} to positive weights")
        return self
