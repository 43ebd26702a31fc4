"""Object storage: the local SeaweedFS server script, and a multi-omic corpus prepared into S3 and trained from."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import runpy
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from raybio.config import load_config
from raybio.data import storage
from raybio.data.manifest import load_manifest
from raybio.data.prepare import default_shards_uri, prepare
from raybio.tune.args import SMOKE

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "infra", "s3", "local_s3.py")


def _listening_addresses(pid: int) -> set[str]:
    """Local addresses of the TCP sockets `pid` listens on (from `ss`)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if f"pid={pid}," in line}


def test_local_s3_script_binds_loopback_keeps_credentials_private_and_stops_by_pid(tmp_path):
    d = tmp_path / "srv"
    cmd = [sys.executable, SCRIPT, "start", "--dir", str(d), "--bucket", "bkt-one"]
    started = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    state = json.loads((d / "server.json").read_text())
    try:
        assert state["secret_key"] not in started.stdout + started.stderr  # never printed
        for name in ("server.json", "s3.env", "s3.json"):
            assert stat.S_IMODE((d / name).stat().st_mode) == 0o600
        assert _listening_addresses(state["pid"]) == {"127.0.0.1"}
        import s3fs

        fs = s3fs.S3FileSystem(key=state["access_key"], secret=state["secret_key"], endpoint_url=state["endpoint"])
        assert fs.exists("bkt-one")
        wrong = s3fs.S3FileSystem(key=state["access_key"], secret="wrong", endpoint_url=state["endpoint"])
        with pytest.raises(PermissionError):
            wrong.ls("bkt-one")
    finally:
        subprocess.run([sys.executable, SCRIPT, "stop", "--dir", str(d)], check=True, timeout=60)
    cmdline = Path(f"/proc/{state['pid']}/cmdline")
    assert not cmdline.exists() or b"weed" not in cmdline.read_bytes()
    assert not (d / "server.json").exists()


def test_sources_read_from_s3_by_glob(ray_local, s3_server, tmp_path):
    from raybio.config import DataConfig
    from raybio.data.sources import resolve_source

    lam = Path(resolve_source("bundled:lambda")).read_bytes()
    for name in ("a.fa", "b.fa", "notes.txt"):
        storage.write_bytes_atomic(s3_server.uri("src", name), lam.replace(b">NC_001416.1", f">{name}".encode()))
    cfg = DataConfig(sources=[s3_server.uri("src", "*.fa")], seq_len=64)
    manifest = prepare(cfg, str(tmp_path / "from_s3"), progress=False)
    (source,) = manifest.sources
    assert [f.uri.rsplit("/", 1)[1] for f in source.files] == ["a.fa", "b.fa"]
    assert source.records == 2 and source.residues == 2 * 48502
    assert source.files[0].sha256 == hashlib.sha256(lam.replace(b">NC_001416.1", b">a.fa")).hexdigest()


# The multi-omic corpus: bundled E. coli genome + its 4,143 proteins in one joint vocabulary.
MULTIOMIC = [
    "data.sources=[bundled:ecoli, bundled:ecoli_proteins]",
    "data.tokenizer.kind=multiomic",
    "data.seq_len=128",
    "data.rows_per_shard=1024",
    "data.mix={dna: 0.5, protein: 0.5}",
    "model.max_seq_len=128",
]


@pytest.fixture(scope="module")
def s3_multiomic(ray_local, s3_server):
    """The multi-omic corpus prepared into the local S3 server: (config, storage root, shards URI, manifest).

    Ray starts first, so its workers lack the AWS variables, as on a cluster's other nodes."""
    exp = load_config("tiny", overrides=[*SMOKE, *MULTIOMIC])
    root = s3_server.uri("raybio-test")
    shards = default_shards_uri(root, exp.data)
    return exp, root, shards, prepare(exp.data, shards, progress=False)


def test_multiomic_corpus_prepared_into_s3_streams_back_mixed(s3_multiomic):
    from raybio.data.loader import TokensCollate, read_split

    exp, _, shards, manifest = s3_multiomic
    assert shards.startswith("s3://") and load_manifest(shards) == manifest
    train = manifest.splits["train"]
    assert set(train.modalities) == {"dna", "protein"} and manifest.sources[1].records == 4143
    shard = train.shards[0]
    assert hashlib.sha256(storage.read_bytes(storage.join(shards, shard.path))).hexdigest() == shard.sha256
    ds = read_split(shards, manifest, "train", mix=exp.data.mix, seed=0)
    counts = torch.zeros(2)
    for batch in ds.iter_torch_batches(batch_size=512, collate_fn=TokensCollate()):
        counts += torch.bincount(batch["modality"], minlength=2)
    assert counts[1] / counts.sum() == pytest.approx(0.5, abs=0.05)


def test_sweep_trains_from_the_s3_corpus_and_keeps_everything_in_s3(s3_multiomic, tmp_path):
    """`sweeps/expert_count.py --storage s3://...` reuses the prepared corpus; results, TensorBoard and
    checkpoints all land in the bucket."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, root, shards, manifest = s3_multiomic
    main = runpy.run_path(str(Path(__file__).resolve().parents[1] / "sweeps" / "expert_count.py"))["main"]
    flags = ["--smoke", "--storage", root, "--name", "s3_sweep", "--experts", "4", "--max-steps", "6"]
    main([*flags, "--set", *MULTIOMIC, "train.log_every=3", "train.checkpoint_every=0"])

    assert load_manifest(shards) == manifest  # prepared once: the sweep found it complete
    sweep = storage.join(root, "s3_sweep")
    df = pd.read_csv(io.BytesIO(storage.read_bytes(storage.join(sweep, "results.csv"))))
    (row,) = df.to_dict("records")
    assert row["status"] == "OK" and row["step"] == 6 and math.isfinite(row["val_loss"])
    assert row["loss"] < math.log(manifest.tokenizer.vocab_size) + 1
    files = [p for p, _ in storage.list_files(sweep)]
    assert any(p.endswith(".pt") for p in files), "trial checkpoint not in S3"
    events = [p for p in files if p.startswith("tensorboard/") and "tfevents" in p]
    assert events, "TensorBoard event files not copied to S3"
    local = tmp_path / "events.tfevents"
    local.write_bytes(storage.read_bytes(storage.join(sweep, events[0])))
    acc = EventAccumulator(str(local))
    acc.Reload()
    assert acc.Tags()["scalars"]
