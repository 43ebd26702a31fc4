"""Finished downstream rows, one small file each, so a rerun resumes instead of starting over.

Every finished (checkpoint, task, model, protocol, seed, hyper-parameter) row is written to
`<out>/journal/<key>.json` the moment it finishes (atomically, by the process that ran it).
The key hashes the row's identity with the evaluation config and the task's fingerprint, so a
rerun with the same arguments finds it and skips the run; changed arguments never reuse a row.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from raybio.data import storage

JOURNAL_DIR = "journal"
IDENTITY = ("checkpoint", "task", "model", "protocol", "seed", "hp_name", "hp")


def row_key(identity: dict, config_hash: str, task_fingerprint: str) -> str:
    """The journal key of a row: its identity, the evaluation config and the task data, hashed."""
    text = json.dumps({**{k: identity.get(k) for k in IDENTITY}, "cfg": config_hash, "task": task_fingerprint})
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Journal:
    """The journal folder of one output directory (local or s3://); `None` out_dir keeps nothing."""

    def __init__(self, out_dir: str | None, config_hash: str):
        self.dir = storage.join(out_dir, JOURNAL_DIR) if out_dir else None
        self.config_hash = config_hash

    def write(self, key: str, row: dict) -> None:
        if self.dir is None:
            return
        data = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()}
        data["prob_shape"] = list(row["prob"].shape) if isinstance(row.get("prob"), np.ndarray) else None
        storage.write_bytes_atomic(storage.join(self.dir, f"{key}.json"), json.dumps(data).encode())

    def read_all(self) -> dict[str, dict]:
        """Every journaled row by key (probabilities back as float32 arrays)."""
        if self.dir is None:
            return {}
        rows = {}
        for rel, _ in storage.list_files(self.dir):
            if not rel.endswith(".json"):
                continue  # a write in progress (.tmp-<pid>)
            row = json.loads(storage.read_bytes(storage.join(self.dir, rel)))
            shape = row.pop("prob_shape", None)
            if shape is not None:
                row["prob"] = np.asarray(row["prob"], dtype=np.float32).reshape(shape)
            rows[rel.removesuffix(".json")] = row
        return rows
