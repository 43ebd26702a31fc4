"""Record validation: alphabets, IUPAC mapping, and counted rejections by reason.

Bad input never disappears silently. Whole-file problems (not FASTA, truncated gzip,
protein given to a DNA tokenizer) raise `InputError`. Record-level problems either raise
(invalid characters, unless `on_invalid="skip"`) or reject the record and count it under
a reason in `Rejects`, with the first example message kept for the prepare summary.
"""

from __future__ import annotations

import bisect
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field

from raybio.data.alphabet import ALPHABETS, IUPAC, looks_like_protein

REASONS = {
    "empty": "record has no sequence",
    "invalid_character": "record has characters outside the alphabet (on_invalid=skip)",
    "too_short": "record shorter than data.min_length",
    "duplicate_id": "record ID seen before in the same file (the first is kept)",
}


class InputError(ValueError):
    """A source cannot be used as given; the message names the file, place and fix."""


NOTES = {
    "iupac_mapped": "records in which IUPAC ambiguity codes were mapped to N / X (data.iupac_to_n)",
    "trailing_stop_removed": "protein records whose trailing stop '*' was removed",
}


@dataclass
class Rejects:
    """Rejected-record counts by reason (with the first example of each), and counted repairs."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    notes: Counter = field(default_factory=Counter)

    def add(self, reason: str, message: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, message)

    def as_dict(self) -> dict:
        return {"counts": dict(self.counts), "examples": dict(self.examples), "notes": dict(self.notes)}


@dataclass(frozen=True)
class Policy:
    """What to do with imperfect records (from DataConfig)."""

    iupac_to_n: bool = False
    on_invalid: str = "error"  # or "skip"
    min_length: int = 1


class Validator:
    """Checks one file's records: upper-cases, maps IUPAC codes if asked, rejects or raises."""

    def __init__(self, modality: str, policy: Policy, rejects: Rejects, path: str):
        self.modality, self.policy, self.rejects, self.path = modality, policy, rejects, path
        self.valid = ALPHABETS[modality].encode()
        codes, target = (x.encode() for x in IUPAC[modality])
        lower = bytes(range(ord("a"), ord("z") + 1))
        src, dst = lower, lower.upper()
        if policy.iupac_to_n:
            src, dst = src + codes + codes.lower(), dst + target * len(codes) * 2
        self.table = bytes.maketrans(src, dst)
        self.iupac_target = target
        self.seen: set[str] = set()

    def check(self, rid: str, seq: bytes, line: int, line_lengths: list[tuple[int, int]]) -> str | None:
        """The cleaned sequence, or None if the record was rejected (and counted).

        `line_lengths` lists (line number, cumulative residues up to the end of that line)
        for the record's sequence lines, to report invalid characters by line and column.
        """
        where = f"{self.path}:{line}"
        if rid in self.seen:
            self.rejects.add("duplicate_id", f"{where}: duplicate record ID {rid!r} (the first is kept)")
            return None
        self.seen.add(rid)
        if self.modality == "protein" and seq.endswith(b"*"):
            seq = seq[:-1]
            self.rejects.notes["trailing_stop_removed"] += 1
        if not seq:
            self.rejects.add("empty", f"{where}: record {rid!r} has no sequence")
            return None
        mapped = seq.translate(self.table)
        if self.policy.iupac_to_n and mapped.count(self.iupac_target) != seq.upper().count(self.iupac_target):
            self.rejects.notes["iupac_mapped"] += 1
        bad = mapped.translate(None, self.valid)
        if bad:
            pos = min(mapped.find(c) for c in set(bad))
            message = self._invalid_message(rid, mapped, pos, line_lengths)
            if self.policy.on_invalid == "error":
                raise InputError(message)
            self.rejects.add("invalid_character", message)
            return None
        if len(mapped) < self.policy.min_length:
            self.rejects.add(
                "too_short",
                f"{where}: record {rid!r} has {len(mapped)} residues < data.min_length={self.policy.min_length}",
            )
            return None
        return mapped.decode("ascii")

    def _invalid_message(self, rid: str, seq: bytes, pos: int, line_lengths: list[tuple[int, int]]) -> str:
        i = bisect.bisect_right([end for _, end in line_lengths], pos)
        lineno = line_lengths[i][0]
        col = pos - (line_lengths[i - 1][1] if i else 0) + 1
        ch = chr(seq[pos])
        msg = f"{self.path}:{lineno}:{col}: invalid character {ch!r} in record {rid!r}; allowed: {self.valid.decode()}"
        codes, target = IUPAC[self.modality]
        if self.modality == "dna" and looks_like_protein(seq):
            msg += " (this looks like protein: declare the source's modality as protein)"
        elif ch in codes:
            msg += f" ({ch!r} is an IUPAC ambiguity code: set data.iupac_to_n=true to read it as {target})"
        return msg + "; or set data.on_invalid=skip to drop such records (they are counted)"


def input_error_in(err: BaseException | None) -> InputError | None:
    """The InputError inside an exception chain (a Ray task failure carries it as `cause`), if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        cause = getattr(err, "cause", None)  # a RayTaskError carries the task's own exception here
        if isinstance(cause, InputError):
            # Our messages are one line; Ray Data appends its retry advice after a newline.
            return InputError(str(cause).split("\n", 1)[0])
        if isinstance(err, InputError) and type(err) is InputError:
            return err
        err = err.__cause__ or err.__context__
    return None


# Ray Data logs a failed task's whole traceback from these before re-raising it. For an
# InputError (bad user input, e.g. an invalid character) raybio prints a one-line
# file:line:col message instead, so the records are marked `hide`: Ray Data's console handler
# drops them and its log file (<session>/logs/ray-data) keeps them.
RAY_DATA_ERROR_LOGGERS = ("ray.data._internal.execution.streaming_executor_state", "ray.data.exceptions")


def hide_input_errors(record: logging.LogRecord) -> bool:
    """Logging filter: mark records about an InputError `hide` (console only); never drops a record."""
    # Some of these records are logged inside `except` without exc_info: the exception is current.
    if input_error_in(record.exc_info[1] if record.exc_info else sys.exc_info()[1]) is not None:
        record.hide = True
    return True


def keep_input_errors_off_the_console() -> None:
    """Install `hide_input_errors` on Ray Data's error loggers (idempotent)."""
    for name in RAY_DATA_ERROR_LOGGERS:
        logger = logging.getLogger(name)
        if hide_input_errors not in logger.filters:
            logger.addFilter(hide_input_errors)
