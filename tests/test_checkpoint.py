"""Checkpoints in one process: exact resume, checksum verification, and the LR schedules."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from helpers import ENGINE_VOCAB as VOCAB
from helpers import train_random_batches

from raybio.config import ConfigError, load_config
from raybio.models.model import BioLM
from raybio.train import checkpoint
from raybio.train.engine import build_engine
from raybio.train.schedule import lr_lambda
from raybio.train.state import TrainState, rng_state, set_rng_state


def _exp(**train):
    overrides = {
        "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "pattern": "A", "max_seq_len": 16},
        "train": {"max_steps": 20, "warmup_steps": 2, "engine": "ddp", **train},
        "data": {"seq_len": 16},
    }
    return load_config("tiny", overrides=overrides)


def _engine(exp):
    torch.manual_seed(0)
    return build_engine(BioLM(exp.model, VOCAB), exp, torch.device("cpu"))


def _save(directory: Path, engine, gen, step: int) -> None:
    state = TrainState(step=step, epoch=1, batch_in_epoch=3, metrics={"initial": {"init_val_loss": 3.0}})
    rank_state = {"rng": rng_state(gen), "tokens_seen": 123}
    checkpoint.write(directory, engine, state, rank_state, rank=0, world=1, files={"config.json": b'{"k": 1}'})


def test_resume_continues_the_exact_loss_trajectory(tmp_path):
    exp = _exp()
    ref_gen = torch.Generator().manual_seed(7)
    reference = train_random_batches(_engine(exp), ref_gen, 10)

    engine, gen = _engine(exp), torch.Generator().manual_seed(7)
    first = train_random_batches(engine, gen, 4)
    _save(tmp_path, engine, gen, step=4)
    train_random_batches(engine, gen, 3)  # diverge the live objects: the restore must overwrite all of it

    fresh, fresh_gen = _engine(exp), torch.Generator().manual_seed(999)
    state, rank_state = checkpoint.read(tmp_path, fresh, rank=0, world=1)
    set_rng_state(rank_state["rng"], fresh_gen)
    resumed = train_random_batches(fresh, fresh_gen, 6)

    assert (state.step, state.epoch, state.batch_in_epoch, rank_state["tokens_seen"]) == (4, 1, 3, 123)
    assert state.metrics == {"initial": {"init_val_loss": 3.0}}
    assert first + resumed == pytest.approx(reference, rel=1e-6, abs=1e-7)
    assert fresh.lr == pytest.approx(exp.train.lr * lr_lambda(exp.train)(10))
    assert json.loads((tmp_path / "config.json").read_text()) == {"k": 1}


def test_checksums_list_every_file_with_its_hash(tmp_path):
    engine = _engine(_exp())
    _save(tmp_path, engine, torch.Generator(), step=1)
    checksums = json.loads((tmp_path / checkpoint.CHECKSUMS).read_text())
    on_disk = {p.name for p in tmp_path.iterdir()} - {checkpoint.CHECKSUMS}
    want = {"model.pt", "engine.pt", "rank0.pt", "train_state.json", "config.json"}
    assert set(checksums["files"]) == on_disk == want
    assert checksums["files"]["model.pt"]["sha256"] == checkpoint.sha256(tmp_path / "model.pt")
    assert checkpoint.verify(tmp_path)["step"] == 1
    # The exported weights load into a plain model (inference needs no engine).
    model = BioLM(_exp().model, VOCAB)
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / checkpoint.CHECKSUMS).unlink(), "incomplete: it has no checksums.json"),
        (lambda d: (d / "engine.pt").unlink(), "incomplete: engine.pt is missing"),
        (lambda d: _flip_byte(d / "model.pt"), "corrupted: model.pt does not match"),
        (lambda d: _truncate(d / "rank0.pt"), "corrupted: rank0.pt does not match"),
        (lambda d: (d / checkpoint.CHECKSUMS).write_text('{"files": '), "checksums.json is unreadable"),
    ],
    ids=["no-checksums", "missing-file", "flipped-byte", "truncated", "torn-checksums"],
)
def test_damaged_checkpoint_is_refused_with_a_clear_error(tmp_path, damage, message):
    engine = _engine(_exp())
    _save(tmp_path, engine, torch.Generator(), step=1)
    damage(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match=message):
        checkpoint.read(tmp_path, _engine(_exp()), rank=0, world=1)


def test_checkpoint_from_another_world_size_names_the_fix(tmp_path):
    _save(tmp_path, _engine(_exp()), torch.Generator(), step=1)
    with pytest.raises(checkpoint.CheckpointError, match=r"written by 1 workers.*num_workers=1"):
        checkpoint.read(tmp_path, _engine(_exp()), rank=0, world=2)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_schedule_warms_up_then_decays_to_the_floor(schedule):
    t = _exp(schedule=schedule, warmup_steps=10, max_steps=110, min_lr_ratio=0.1).train
    f = lr_lambda(t)
    assert [f(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    mid = 0.1 + 0.9 * (0.5 if schedule == "linear" else 0.5 * (1 + math.cos(math.pi / 2)))
    assert f(60) == pytest.approx(mid)
    assert f(35) == pytest.approx(0.1 + 0.9 * (0.75 if schedule == "linear" else 0.5 * (1 + math.cos(math.pi / 4))))
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    steps = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(steps))


def test_checkpoint_every_must_be_a_logging_step():
    with pytest.raises(Exception, match=r"checkpoint_every .* multiple of log_every"):
        _exp(log_every=10, checkpoint_every=15)
    with pytest.raises(Exception, match="zero_stage=2 needs engine=deepspeed"):
        _exp(zero_stage=2)


def test_a_checkpoint_saved_by_an_earlier_raybio_still_reads_its_experiment(tmp_path):
    """train.eval_batches was retired for train.eval_windows: an old checkpoint's config ignores it."""
    from raybio.models.pretrained import CONFIG_FILE

    exp = load_config("tiny").model_dump()
    exp["train"]["eval_batches"] = 8
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"experiment": exp}))
    assert checkpoint.read_experiment(str(tmp_path)) == load_config("tiny")
    exp["train"]["eval_bathces"] = 8  # a misspelling is still an error, named
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"experiment": exp}))
    with pytest.raises(ConfigError, match=r"train\.eval_bathces"):
        checkpoint.read_experiment(str(tmp_path))
