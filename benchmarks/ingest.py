"""Ingest benchmark: tokenizer speed, loader throughput (local parquet and local S3), data wait in training.

What it compares, side by side in one run:
  * tokenizer: raybio's numpy k-mer encoder against HF `tokenizers` on the same E. coli
    sequence: an HF WordLevel model with the same k-mer rule (a regex split; its ids are
    checked equal to ours) and an HF BPE (Omni-DNA-style, 4,096 tokens), each on one core.
  * loader: tokens/s a training worker's iterator receives (read_split -> the equal
    streaming split Ray Train hands each worker -> iter_batches at the tiny preset's batch
    size) against a raw pyarrow read of the same files through the same filesystem that
    yields the same batches (same chunking, collate and slicing), from local disk and from
    the local SeaweedFS S3 server. The stream is the train split repeated (a long epoch);
    timed end to end, including the read's start-up, after one warm-up epoch on the same
    split (as in epoch 2+ of a run). Steady-state ratio and time to first batch are listed.
    Rounds alternate raw and loader; the ratio is the median of per-round ratios.
  * data wait: a real 1-worker Ray TorchTrainer on the tiny preset; the fraction of each
    step spent waiting for the next batch, over the last report window (pipeline warmed up).

Usage: python benchmarks/ingest.py [--quick] [--out benchmarks/results/ingest-DATE-cpu.txt]
The last line printed is one JSON object: {"benchmark": "ingest", "ratios": {...}, "conditions": {...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import runpy
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAYON_NUM_THREADS", "1")  # HF tokenizers on one core, like ours

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parents[1]
S3_SCRIPT = ROOT / "infra" / "s3" / "local_s3.py"


def machine() -> dict:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    import pyarrow
    import ray
    import tokenizers

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "pyarrow": pyarrow.__version__,
        "tokenizers": tokenizers.__version__,
        "loadavg_start": os.getloadavg()[0],
    }


def best_rate(fn, units: int, repeats: int) -> float:
    """Best-of-`repeats` units per second (the least disturbed run on a shared machine)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return units / best


def bench_tokenizers(quick: bool) -> dict:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    from raybio.data.bpe import BPETokenizer
    from raybio.data.fasta import read_fasta
    from raybio.data.sources import resolve_source
    from raybio.data.tokenizers import KmerTokenizer, ProteinTokenizer

    genome = next(read_fasta(resolve_source("bundled:ecoli"))).seq
    proteins = "".join(r.seq for r in read_fasta(resolve_source("bundled:ecoli_proteins"), "protein"))
    tok = KmerTokenizer(3)
    ours = best_rate(lambda: tok.encode(genome), len(genome), 5)
    with_n = "".join(genome[i : i + 999] + "N" for i in range(0, len(genome), 1000))  # an N every kb
    ours_n = best_rate(lambda: tok.encode(with_n), len(with_n), 3)
    prot = ProteinTokenizer()
    ours_prot = best_rate(lambda: prot.encode(proteins), len(proteins), 5)

    hf = Tokenizer(models.WordLevel(tok.token_to_id, unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Split(Regex("[ACGT]{3}|[ACGT]|N"), behavior="isolated")
    piece = genome[: 200_000 if quick else 1_000_000]
    assert hf.encode(piece).ids == tok.encode(piece).tolist(), "HF reference disagrees with raybio's k-mer ids"
    hf_kmer = best_rate(lambda: hf.encode(piece), len(piece), 1 if quick else 2)
    sample = genome[: 500_000 if quick else 2_000_000]
    bpe = BPETokenizer.train([sample[i : i + 10_000] for i in range(0, len(sample), 10_000)], "dna", 4096)
    piece_bpe = genome[: 500_000 if quick else 2_000_000]
    hf_bpe = best_rate(lambda: bpe.hf.encode(piece_bpe), len(piece_bpe), 1 if quick else 2)
    return {
        "kmer_bases_per_s_per_core": ours,
        "kmer_with_n_bases_per_s_per_core": ours_n,
        "protein_residues_per_s_per_core": ours_prot,
        "hf_kmer_bases_per_s_per_core": hf_kmer,
        "hf_bpe4096_bases_per_s_per_core": hf_bpe,
        "hf_text_bases": {"kmer": len(piece), "bpe": len(piece_bpe)},
    }


def collated_slices(rows: dict, collate, batch_size: int):
    out = collate(rows)
    n = len(out["tokens"])
    for i in range(0, n, batch_size):
        yield {k: v[i : i + batch_size] for k, v in out.items()}


def repeated(manifest, times: int):
    """The manifest with its train shard list repeated: one long stream over the same files."""
    t = manifest.splits["train"]
    train = t.model_copy(update={"shards": t.shards * times, "rows": t.rows * times, "tokens": t.tokens * times})
    return manifest.model_copy(update={"splits": {**manifest.splits, "train": train}})


def timed(batches) -> tuple[float, float, float, int]:
    """(end-to-end tokens/s, steady tokens/s after the first batch, seconds to first batch, tokens)."""
    t_start, t_first, n = time.perf_counter(), None, 0
    for b in batches:
        n += b["tokens"].numel()
        if t_first is None:
            t_first, n_first = time.perf_counter(), n
    t_end = time.perf_counter()
    return n / (t_end - t_start), (n - n_first) / (t_end - t_first), t_first - t_start, n


def raw_batches(paths: list[str], fs, batch_size: int):
    """pyarrow reads the same files through the same filesystem; same chunks, collate and batches."""
    from raybio.data.loader import CHUNK_ROWS, TokensCollate, arrow_to_numpy

    collate, chunk = TokensCollate(), batch_size * max(1, CHUNK_ROWS // batch_size)
    for path in paths:
        with fs.open_input_file(path) as f:
            for rb in pq.ParquetFile(f).iter_batches(batch_size=chunk, columns=["tokens", "modality"]):
                out = collate(arrow_to_numpy(pa.Table.from_batches([rb])))
                for i in range(0, len(out["tokens"]), batch_size):
                    yield {k: v[i : i + batch_size] for k, v in out.items()}


def worker_shard(shards_uri: str, manifest):
    """What ray.train.get_dataset_shard returns to the one worker: an equal streaming split.

    Made once, like Ray Train does; every epoch (`iter_batches` call) re-runs the read.
    """
    from raybio.data.loader import read_split

    ds = read_split(shards_uri, manifest, "train", seed=0)
    ds.context.execution_options.preserve_order = True  # as the trainer's ingest options
    (shard,) = ds.streaming_split(1, equal=True)
    return shard


def loader_batches(shard, batch_size: int, seed: int):
    """One epoch as the training loop receives it."""
    from raybio.data.loader import iter_batches

    yield from iter_batches(shard, batch_size, shuffle_buffer=256, seed=seed)


def bench_loader(shards_uri: str, manifest, batch_size: int, rounds: int, times: int) -> dict:
    from raybio.data import storage

    stream = repeated(manifest, times)
    fs, _ = storage.filesystem(shards_uri, whole_files=True)  # read_split's filesystem
    paths = [
        storage.filesystem(p)[1] if not storage.is_remote(p) else p.removeprefix("s3://")
        for p in stream.split_uris(shards_uri, "train")
    ]
    shard = worker_shard(shards_uri, stream)
    timed(loader_batches(shard, batch_size, 0))  # the first epoch starts the reader processes
    timed(raw_batches(paths[: len(manifest.splits["train"].shards)], fs, batch_size))
    raws, loads = [], []
    for r in range(rounds):
        raws.append(timed(raw_batches(paths, fs, batch_size)))
        loads.append(timed(loader_batches(shard, batch_size, r + 1)))
        assert raws[-1][3] == loads[-1][3] == stream.splits["train"].tokens, (raws[-1], loads[-1])

    def med(xs, i):
        return statistics.median(x[i] for x in xs)

    return {
        "raw_tokens_per_s": med(raws, 0),
        "loader_tokens_per_s": med(loads, 0),
        "ratio": statistics.median(load[0] / raw[0] for raw, load in zip(raws, loads, strict=True)),
        "steady_ratio": statistics.median(load[1] / raw[1] for raw, load in zip(raws, loads, strict=True)),
        "first_batch_s_raw": med(raws, 2),
        "first_batch_s_loader": med(loads, 2),
        "tokens_per_stream": stream.splits["train"].tokens,
        "times": times,
    }


def bench_data_wait(exp, shards_uri: str, manifest, storage_path: str, steps: int) -> dict:
    from raybio.train.ray_trainer import build_trainer

    window = max(5, steps // 2)
    exp = exp.model_copy(deep=True)
    # Checkpoint only at the end (first: each assignment is validated against the others).
    exp.train.checkpoint_every = 0
    exp.train.max_steps, exp.train.log_every, exp.train.eval_every = 2 * window, window, 0
    exp.train.eval_windows = 16
    result = build_trainer(exp, shards_uri, manifest, storage_path, "ingest_data_wait").fit()
    m = result.metrics
    return {
        "data_wait_fraction": m["data_wait_fraction"],
        "data_wait_s": m["data_wait_s"],
        "step_time_s": m["step_time_s"],
        "tokens_per_s": m["tokens_per_s"],
        "steps": exp.train.max_steps,
        "window": window,
    }


def run(quick: bool) -> dict:
    from raybio.cluster import DATA_CPU_RESERVE, init_ray
    from raybio.config import load_config
    from raybio.data import storage
    from raybio.data.prepare import default_shards_uri, prepare

    info = machine()
    t0 = time.perf_counter()
    phases: dict[str, float] = {}
    mark = [t0]

    def lap(name: str) -> None:
        now = time.perf_counter()
        phases[name] = round(now - mark[0], 1)
        mark[0] = now

    tok = bench_tokenizers(quick)
    lap("tokenizers")
    if os.environ.get("RAY_ADDRESS"):
        init_ray()
    else:  # a fresh local cluster, never someone else's `ray start` on this machine
        import ray

        ray.init(address="local", num_cpus=(os.cpu_count() or 1) + DATA_CPU_RESERVE, dashboard_host="127.0.0.1")
    lap("ray_start")
    tiny = load_config("tiny")
    batch = tiny.train.batch_size
    multi = load_config(
        "tiny",
        overrides=[
            "data.sources=[bundled:ecoli, bundled:ecoli_proteins]",
            "data.tokenizer.kind=multiomic",
            "data.rows_per_shard=1024",
        ],
    )
    rounds = 2 if quick else 5
    # Streams long enough that a raw read takes seconds: the loader's one-off start-up
    # (split coordinator, first read task) is then paid once per long stream, as in a real epoch.
    times_local, times_s3 = (30, 8) if quick else (200, 40)
    with tempfile.TemporaryDirectory(prefix="raybio-ingest-") as tmp:
        local_uri = default_shards_uri(tmp, multi.data)
        t = time.perf_counter()
        manifest = prepare(multi.data, local_uri, progress=False)
        prep_s = time.perf_counter() - t
        residues = sum(s.residues for s in manifest.sources)
        lap("prepare")
        local = bench_loader(local_uri, manifest, batch, rounds, times_local)
        lap("loader_local")
        with runpy.run_path(str(S3_SCRIPT))["serving"](Path(tmp) / "s3") as s3:
            bucket = f"s3://{s3['bucket']}"
            s3_uri = default_shards_uri(f"{bucket}/ingest", multi.data)
            t = time.perf_counter()
            if quick:  # the same corpus, copied instead of prepared again
                fs, path = storage.filesystem(s3_uri)
                pafs.copy_files(local_uri, path, destination_filesystem=fs)
                s3_manifest, prep_s3_s = manifest, None
            else:
                s3_manifest = prepare(multi.data, s3_uri, progress=False)
                prep_s3_s = time.perf_counter() - t
            s3 = bench_loader(s3_uri, s3_manifest, batch, rounds, times_s3)
        lap("loader_s3")
        tiny_uri = default_shards_uri(tmp, tiny.data)
        tiny_manifest = prepare(tiny.data, tiny_uri, progress=False)
        wait = bench_data_wait(tiny, tiny_uri, tiny_manifest, str(Path(tmp) / "runs"), 10 if quick else 100)
        lap("data_wait")
    info["loadavg_end"] = os.getloadavg()[0]
    info["wall_s"] = round(time.perf_counter() - t0, 1)
    info["phases_s"] = phases
    return {
        "tok": tok,
        "local": local,
        "s3": s3,
        "wait": wait,
        "prepare": {"local_s": prep_s, "s3_s": prep_s3_s, "residues": residues, "windows": manifest},
        "info": info,
        "batch": batch,
        "rounds": rounds,
        "seq_len": multi.data.seq_len,
    }


def report(r: dict, quick: bool) -> str:
    tok, local, s3, wait, info = r["tok"], r["local"], r["s3"], r["wait"], r["info"]
    p = r["prepare"]
    train = p["windows"].splits["train"]
    lines = [
        f"raybio ingest benchmark{' (--quick)' if quick else ''}",
        f"machine: {info['nproc']} CPU ({info['cpu']}), python {info['python']}, torch {info['torch']}, "
        f"ray {info['ray']}, pyarrow {info['pyarrow']}, tokenizers {info['tokenizers']}; "
        f"1-min load {info['loadavg_start']:.1f} -> {info['loadavg_end']:.1f}; wall {info['wall_s']} s "
        f"({', '.join(f'{k} {v}' for k, v in info['phases_s'].items())})",
        "",
        "tokenizer throughput, one core, E. coli K-12 genome (4.64 Mb) / its proteins (1.31 M aa)",
        f"  raybio k-mer (k=3, numpy)            {tok['kmer_bases_per_s_per_core']:>14,.0f} bases/s",
        f"  raybio k-mer, an N every 1 kb        {tok['kmer_with_n_bases_per_s_per_core']:>14,.0f} bases/s",
        f"  raybio protein residues              {tok['protein_residues_per_s_per_core']:>14,.0f} residues/s",
        f"  HF tokenizers k-mer (same ids)       {tok['hf_kmer_bases_per_s_per_core']:>14,.0f} bases/s"
        f"  (on {tok['hf_text_bases']['kmer']:,} bases)",
        f"  HF tokenizers BPE 4,096              {tok['hf_bpe4096_bases_per_s_per_core']:>14,.0f} bases/s"
        f"  (on {tok['hf_text_bases']['bpe']:,} bases)",
        f"  raybio k-mer / HF k-mer = {tok['kmer_bases_per_s_per_core'] / tok['hf_kmer_bases_per_s_per_core']:,.0f}x; "
        f"/ HF BPE = {tok['kmer_bases_per_s_per_core'] / tok['hf_bpe4096_bases_per_s_per_core']:,.1f}x",
        "",
        f"prepare (Ray Data job) of the multi-omic corpus: {p['residues']:,} residues -> {train.rows:,} train "
        f"windows of {r['seq_len']} tokens; local {p['local_s']:.1f} s, "
        + (f"into S3 {p['s3_s']:.1f} s" if p["s3_s"] is not None else "copied to S3 (--quick)"),
        "",
        f"loader -> training worker iterator, batch {r['batch']} x {r['seq_len']} tokens; stream = the train split "
        f"({train.tokens:,} tokens) repeated (local x{local['times']}, "
        f"S3 x{s3['times']}); end to end incl. start-up; median of {r['rounds']} alternating rounds",
        f"  {'source':<7}{'raw tok/s':>14}{'loader tok/s':>15}{'loader/raw':>12}{'steady ratio':>14}"
        f"{'1st batch raw':>15}{'1st batch loader':>18}",
    ]
    for name, x in (("local", local), ("s3", s3)):
        lines.append(
            f"  {name:<7}{x['raw_tokens_per_s']:>14,.0f}{x['loader_tokens_per_s']:>15,.0f}{x['ratio']:>12.2f}"
            f"{x['steady_ratio']:>14.2f}{x['first_batch_s_raw']:>14.2f}s{x['first_batch_s_loader']:>17.2f}s"
        )
    lines += [
        "",
        f"tiny preset, 1-worker TorchTrainer, {wait['steps']} steps: step {wait['step_time_s'] * 1e3:.1f} ms, "
        f"data wait {wait['data_wait_s'] * 1e3:.2f} ms per step over the last {wait['window']} steps "
        f"-> data-wait fraction {wait['data_wait_fraction']:.4f}; {wait['tokens_per_s']:,.0f} tokens/s",
    ]
    return "\n".join(lines)


def summary_json(r: dict, quick: bool) -> dict:
    tok, info = r["tok"], r["info"]
    return {
        "benchmark": "ingest",
        "ratios": {
            "loader_over_raw_local": round(r["local"]["ratio"], 3),
            "loader_over_raw_s3": round(r["s3"]["ratio"], 3),
            "data_wait_fraction_tiny": round(r["wait"]["data_wait_fraction"], 5),
            "kmer_bases_per_s_per_core": round(tok["kmer_bases_per_s_per_core"]),
            "kmer_over_hf_kmer": round(tok["kmer_bases_per_s_per_core"] / tok["hf_kmer_bases_per_s_per_core"], 1),
            "kmer_over_hf_bpe4096": round(tok["kmer_bases_per_s_per_core"] / tok["hf_bpe4096_bases_per_s_per_core"], 1),
        },
        "conditions": {
            "quick": quick,
            "device": "cpu",
            "nproc": info["nproc"],
            "cpu": info["cpu"],
            "torch": info["torch"],
            "ray": info["ray"],
            "loadavg_start": round(info["loadavg_start"], 2),
            "loadavg_end": round(info["loadavg_end"], 2),
            "corpus": "bundled E. coli genome + 4,143 proteins, multiomic k=3",
            "seq_len": r["seq_len"],
            "batch_size": r["batch"],
            "rounds": r["rounds"],
            "s3": "SeaweedFS weed mini on 127.0.0.1 (infra/s3/local_s3.py), s3fs",
            "goals": {
                "loader_over_raw_local": ">= 0.5",
                "loader_over_raw_s3": ">= 0.5",
                "data_wait_fraction_tiny": "<= 0.05",
                "kmer_bases_per_s_per_core": ">= 2e7",
            },
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and steps (under 90 s)")
    parser.add_argument("--out", help="also write the full output to this file")
    args = parser.parse_args()
    r = run(args.quick)
    text = report(r, args.quick) + "\n" + json.dumps(summary_json(r, args.quick))
    print(text, flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
