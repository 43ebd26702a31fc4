"""A sweep's record: what ran and what it measured, held in memory and saved as one folder.

`run_sweep` returns a `SweepRecord`; analysis adds the probe, anatomy and fits to it in memory
and saves it once; `raybio report DIR` loads it. This module is the only code that reads or
writes a sweep's files:

    sweep.json                    SweepMeta: the question, axes, budget, base config, command, conditions
    results.{csv,parquet}         one row per trial: axis values, final metrics, full config
    history.{csv,parquet}         every report of every trial (curves)
    probe.{csv,parquet}           the throughput probe, one row per config and round (with machine load)
    anatomy.json                  router anatomy per MoE trial
    fits.json                     the study's statistical answers (verdicts, fitted laws), as computed
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from raybio.config import ExperimentConfig, saved_experiment
from raybio.data import storage
from raybio.data.prepare import default_shards_uri
from raybio.tune.space import trial_experiment
from raybio.units import si


class Requirement(BaseModel):
    """One condition of a paper's regime, on the sweep's base config: `data.seq_len >= 8192`."""

    path: str  # a dotted config path
    op: Literal[">=", "<=", "=="]
    value: Any
    what: str  # what it means, for the verdict: "context length"


class Claim(BaseModel):
    """A published claim a study tests: on `metric`, every treatment config differs from the baseline
    config in the `expected` direction (treatment − baseline), at the paper's regime."""

    text: str
    source: str
    metric: str = "val_loss"  # a results column, or a derived one (raybio.analysis.answer.METRICS)
    expected: Literal["lower", "higher"] = "lower"
    baseline: dict[str, Any]  # axis values of the baseline config, e.g. {"experts": 1}
    treatment: dict[str, Any] = {}  # axis values every treatment config has (empty: every other config)
    regime: list[Requirement] = []


class SweepMeta(BaseModel):
    """sweep.json. Fields added since a sweep was saved load with their defaults (old reports rebuild)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    study: str = ""  # the sweeps/ script that ran it: its own analysis, if registered (raybio.analysis.studies)
    question: str = ""
    claims: list[Claim] = []
    axes: dict[str, list]
    search: str = "grid"
    num_samples: int = 1
    metric: str | list[str] = "val_loss"
    mode: str | list[str] = "min"
    asha: bool = False
    budget: str = ""
    flop_budget: float | None = None
    base: dict
    command: str = ""
    ray_version: str = ""
    wall_time_s: float | None = None  # the trials' wall time (start to Tuner.fit's end)
    fit_wall_time_s: float | None = None  # Tuner.fit alone: the time the trials had
    concurrent_trials: int | None = None
    probe: str = "off"
    probe_steps: int | None = None  # None: a record saved before the probe's settings were kept
    probe_rounds: int | None = None
    tracker: str | None = None  # --tracker: the report goes to the same MLflow / W&B place
    utilisation: dict[str, float] = {}
    utilisation_line: str = ""
    machine: str = "not recorded"


@dataclass
class TrialRun:
    """One trial as analysis needs it: what it trained (the full experiment) and where it left it."""

    trial_id: str
    label: str  # its TensorBoard run name, e.g. `experts=4_ab12c`
    config: str  # its config without the seed, e.g. `experts=4` (replicates share it)
    params: dict
    ok: bool
    experiment: ExperimentConfig
    checkpoint_uri: str  # the final checkpoint (local path or s3:// URI); "" if it has none
    shards_uri: str  # the corpus it trained on


SEED_AXIS = "train.seed"  # what `--train-seeds` sweeps: a replicate, not a design choice


def config_axes(axes: list[str]) -> list[str]:
    """The axes that make a config: every swept axis but the training seed."""
    return [a for a in axes if a != SEED_AXIS]


def axis_label(values: Mapping, axes: list[str]) -> str:
    """`experts=8, train.seed=1`: the values of `axes`, in their order (large round numbers short: 1.35T)."""
    return ", ".join(f"{a}={_short(values.get(a))}" for a in axes)


def _short(value):
    """1350000000000.0 -> 1.35T (a FLOP budget); everything else as it is."""
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1e4:
        return si(value).replace(" ", "")
    return value


def config_label(values: Mapping, axes: list[str]) -> str:
    """`experts=8, top_k=2`: a trial's config without its seed (replicates share it)."""
    return axis_label(values, config_axes(axes)) or "all trials"


def trial_label(params: dict, trial_id: str) -> str:
    """A trial's TensorBoard run name (a folder name), e.g. `experts=4,top_k=2_ab12c`."""
    parts = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{parts}_{trial_id}" if parts else trial_id


@dataclass
class SweepRecord:
    uri: str  # <storage>/<sweep name>
    meta: SweepMeta
    results: pd.DataFrame
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    probe: pd.DataFrame = field(default_factory=pd.DataFrame)
    anatomy: dict[str, dict] = field(default_factory=dict)
    fits: dict = field(default_factory=dict)
    tb_dir: str = ""  # where this process writes TensorBoard files (not saved: a local path)
    config_keys: list[str] = field(init=False)  # the axes that make a config (all but the seed)

    def __post_init__(self) -> None:
        # The labels every view of the sweep uses (tables, plots, verdicts, TensorBoard), computed once here.
        self.config_keys = config_axes(self.axes)
        if len(self.results) and "config" not in self.results:
            rows = [r for _, r in self.results.iterrows()]
            labels = pd.DataFrame(
                {
                    "config": [config_label(r, self.axes) for r in rows],
                    "trial_config": [axis_label(r, self.axes) for r in rows],
                },
                index=self.results.index,
            )
            self.results = pd.concat([self.results.iloc[:, :2], labels, self.results.iloc[:, 2:]], axis=1).copy()

    @property
    def axes(self) -> list[str]:
        return list(self.meta.axes)

    @property
    def ok(self) -> pd.DataFrame:
        return self.results[self.results["status"] == "OK"] if len(self.results) else self.results

    @property
    def root(self) -> str:
        return self.uri.rsplit("/", 1)[0]

    def trials(self) -> list[TrialRun]:
        """Every trial's experiment (rebuilt from the base config and its axis values) and checkpoint."""
        rows = [row for _, row in self.results.iterrows()]
        params = [{a: (row[a].item() if hasattr(row[a], "item") else row[a]) for a in self.axes} for row in rows]
        names = [(trial_label(p, r["trial_id"]), config_label(p, self.axes)) for p, r in zip(params, rows, strict=True)]
        ckpts = [self._checkpoint(row) for row in rows]
        base = saved_experiment(self.meta.base)
        exps = [trial_experiment(base, p) for p in params]
        return [
            TrialRun(trial_id=row["trial_id"], label=label, config=config, params=p, ok=row["status"] == "OK",
                     experiment=exp, checkpoint_uri=ckpt, shards_uri=default_shards_uri(self.root, exp.data))
            for row, p, (label, config), ckpt, exp in zip(rows, params, names, ckpts, exps, strict=True)
        ]  # fmt: skip

    def _checkpoint(self, row: pd.Series) -> str:
        ckpt = row.get("checkpoint_path", "") or ""
        if ckpt and storage.is_remote(self.root) and "://" not in ckpt:  # Ray reports bucket paths bare
            return f"{self.root.split('://')[0]}://{ckpt}"
        return ckpt

    def save(self, report: dict[str, bytes] | None = None) -> None:
        """Every file of the record, each written atomically (tables as CSV and parquet); `report` (file name ->
        bytes) under <sweep>/report; locally written TensorBoard files copied to remote storage."""
        storage.write_json(storage.join(self.uri, "sweep.json"), self.meta.model_dump())
        for stem, table in (("results", self.results), ("history", self.history), ("probe", self.probe)):
            if len(table) or stem == "results":
                storage.write_table(table, self.uri, stem)
        if self.anatomy:
            storage.write_json(storage.join(self.uri, "anatomy.json"), self.anatomy)
        if self.fits:
            storage.write_json(storage.join(self.uri, "fits.json"), self.fits)
        for name, data in (report or {}).items():
            storage.write_bytes_atomic(storage.join(self.uri, "report", name), data)
        if storage.is_remote(self.uri) and self.tb_dir:
            import pyarrow.fs as pafs

            fs, path = storage.filesystem(storage.join(self.uri, "tensorboard"))
            pafs.copy_files(self.tb_dir, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)

    @classmethod
    def load(cls, uri: str) -> SweepRecord:
        """The record of a finished sweep folder (local or s3://); raises FileNotFoundError naming the folder."""
        meta = storage.read_json(storage.join(uri, "sweep.json"))
        if meta is None:
            raise FileNotFoundError(f"{uri} has no sweep.json: is it a finished raybio sweep folder?")
        anatomy = storage.read_json(storage.join(uri, "anatomy.json")) or {}
        return cls(
            uri=uri,
            meta=SweepMeta.model_validate(meta),
            results=_read_table(uri, "results"),
            history=_read_table(uri, "history"),
            probe=_read_table(uri, "probe"),
            anatomy={trial: _anatomy_with_load(entry) for trial, entry in anatomy.items()},
            fits=storage.read_json(storage.join(uri, "fits.json")) or {},
            tb_dir=storage.join(uri, "tensorboard") if not storage.is_remote(uri) else "",
        )


def _read_table(uri: str, stem: str) -> pd.DataFrame:
    """<stem>.parquet, else <stem>.csv (a report folder committed with its CSV only), else empty."""
    for suffix, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        path = storage.join(uri, stem + suffix)
        if storage.exists(path):
            return _probe_unranked(_headline_mask_only(reader(io.BytesIO(storage.read_bytes(path)))))
    return pd.DataFrame()


def _headline_mask_only(df: pd.DataFrame) -> pd.DataFrame:
    """Sweeps saved before 2026-12-06 called the 80/10/10 loss `val_loss` and the mask-only loss
    `val_loss_mask_only`: read them under today's names (the mask-only loss is the headline)."""
    if "val_loss_mask_only" not in df or "val_loss_corrupted" in df:
        return df
    renames = {"val_loss": "val_loss_corrupted", "val_loss_mask_only": "val_loss"}
    renames |= {"init_val_loss": "init_val_loss_corrupted", "init_val_loss_mask_only": "init_val_loss"}
    return df.rename(columns=renames)


def _probe_unranked(df: pd.DataFrame) -> pd.DataFrame:
    """Probes saved before 2026-12-06 have no interval per config: read them as unranked (tie group 0), since
    the rule ranks only configs whose intervals separate."""
    if "probe/tokens_per_s" not in df or "probe/tokens_per_s_low" in df:
        return df
    return df.copy().assign(
        **{"probe/tokens_per_s_low": np.nan, "probe/tokens_per_s_high": np.nan, "probe/tie_group": 0}
    )


def _anatomy_with_load(entry: dict) -> dict:
    """Anatomy saved before 2026-12-06 lacks the per-layer expert load and the divergence flag: derive them
    from its usage counts (load = an expert's share of a layer's routed slots × experts; 1 = uniform)."""
    if "expert_load" not in entry:
        layers = sorted(entry["usage"], key=int)
        counts = [np.sum(list(entry["usage"][k].values()), axis=0).astype(float) for k in layers]
        entry["expert_load"] = [(c / max(c.sum(), 1) * len(c)).tolist() for c in counts]
        entry["divergence"] = any(v == v for v in entry["js_by_layer"].values())  # v == v: not NaN
    return entry
