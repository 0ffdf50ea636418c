"""The executor's journal: a JSON-lines file of intended and applied operations, fsync'd line by line.

Usage::

    >>> import tempfile, os
    >>> from rlmig.configuration import Configuration
    >>> from rlmig.geometry import gpu_model
    >>> gpu = gpu_model("A100-80GB")
    >>> current = Configuration.parse(gpu, [[]])
    >>> target = Configuration.parse(gpu, [["7g.80gb@0=bert"]])
    >>> from rlmig.executor.transition import plan_transition
    >>> plan = plan_transition(current, target)
    >>> journal = Journal(os.path.join(tempfile.mkdtemp(), "journal.jsonl"))
    >>> journal.begin("r1", "apply", plan)
    >>> journal.intent("r1", 0, plan.operations[0]); journal.done("r1", 0)
    >>> journal.intent("r1", 1, plan.operations[1])
    >>> run = journal.last_run(gpu)
    >>> [str(op) for op in run.done]
    ['GPU 0: create GPU instance 7g.80gb@0 (profile 0, placement 0:8)']
    >>> str(run.uncertain), run.finished
    ('GPU 0: create compute instance of 7g.80gb@0', False)

Records, one per line: ``begin`` (run ID, phase ``apply`` or ``rollback``, the configuration it starts
from, its target and the ordered operations), ``intent`` and ``done`` (an operation by its position,
written before and after it runs), ``failed`` (with the error) and ``end`` (status and the configuration
reached). A run without ``end`` was interrupted: recovery reads the real state back, takes the owners
from the run's start and its done operations (an operation with an intent but no done is uncertain and
is redone, which is why tenant hooks are idempotent), and reconciles to the run's target. A torn last
line, from a crash while writing, is ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlmig.configuration import Configuration
from rlmig.errors import RlmigError
from rlmig.executor.planfile import configuration_json, parse_configuration
from rlmig.executor.state import OwnerBook
from rlmig.executor.transition import Operation, Transition
from rlmig.geometry import GpuModel
from rlmig.inputs import read_text


@dataclass(frozen=True, slots=True)
class JournalRun:
    """The last run of a journal, as recorded."""

    run: str
    phase: str
    current: Configuration
    target: Configuration
    operations: tuple[Operation, ...]
    done: tuple[Operation, ...]
    uncertain: Operation | None
    status: str | None
    state: Configuration | None

    @property
    def finished(self) -> bool:
        return self.status is not None

    def owners(self) -> OwnerBook:
        """Who runs where, as far as the journal knows."""
        if self.state is not None:
            return OwnerBook.from_configuration(self.state)
        return OwnerBook.from_configuration(self.current).replay(self.done)


class Journal:
    """An append-only JSON-lines file; each record is flushed and fsync'd before the call returns."""

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._checked = False  # whether the tail was checked for a torn line since this object began

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        new = not self.path.exists()
        try:
            if not self._checked:
                self._cut_torn_tail()
                self._checked = True
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            if new and self.fsync:
                fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise RlmigError(f"journal {self.path}: {exc.strerror or exc}") from None

    def _cut_torn_tail(self) -> None:
        """Drop a last line that a crash left without its newline: that record was never complete (a
        write returns only once its whole line is flushed), and appending after it would fuse the next
        record with it into a line that is not JSON."""
        try:
            with self.path.open("rb+") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    return
                f.seek(size - 1)
                if f.read(1) == b"\n":
                    return
                keep = 0  # the end of the last complete line
                step = 4096
                position = size
                while position > 0 and not keep:
                    position = max(0, position - step)
                    f.seek(position)
                    chunk = f.read(min(step, size - position))
                    newline = chunk.rfind(b"\n")
                    if newline >= 0:
                        keep = position + newline + 1
                f.truncate(keep)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
        except FileNotFoundError:
            return

    def begin(self, run: str, phase: str, plan: Transition) -> None:
        self.write(
            {
                "type": "begin",
                "run": run,
                "phase": phase,
                "current": configuration_json(plan.current),
                "target": configuration_json(plan.target),
                "operations": [op.to_json() for op in plan.operations],
            }
        )

    def intent(self, run: str, seq: int, op: Operation) -> None:
        self.write({"type": "intent", "run": run, "seq": seq, "op": op.to_json()})

    def done(self, run: str, seq: int) -> None:
        self.write({"type": "done", "run": run, "seq": seq})

    def failed(self, run: str, seq: int, error: str) -> None:
        self.write({"type": "failed", "run": run, "seq": seq, "error": error})

    def end(self, run: str, status: str, state: Configuration | None) -> None:
        record: dict[str, Any] = {"type": "end", "run": run, "status": status}
        if state is not None:
            record["state"] = configuration_json(state)
        self.write(record)

    def records(self) -> list[dict[str, Any]]:
        """Every record (a torn or unreadable last line is dropped)."""
        if not self.path.exists():
            return []
        lines = read_text(self.path, "the journal").splitlines()
        records = []
        for n, line in enumerate(lines):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if n == len(lines) - 1:
                    break
                raise RlmigError(f"journal {self.path}: line {n + 1} is not JSON") from None
            if isinstance(record, dict):
                records.append(record)
        return records

    def last_run(self, gpu: GpuModel) -> JournalRun | None:
        """The last run recorded, or None for an empty journal."""
        records = self.records()
        starts = [n for n, r in enumerate(records) if r.get("type") == "begin"]
        if not starts:
            return None
        begin = records[starts[-1]]
        run = begin.get("run")
        where = f"journal {self.path}"
        try:
            current = parse_configuration(begin["current"], where)
            target = parse_configuration(begin["target"], where)
            if current.gpu != gpu:
                raise RlmigError(f"{where} is for {current.gpu.name} GPUs, not {gpu.name}")
            ops = tuple(Operation.from_json(doc, gpu) for doc in begin["operations"])
            done: list[Operation] = []
            intended: set[int] = set()
            status = state = None
            for r in records[starts[-1] + 1 :]:
                if r.get("run") != run:
                    continue
                if r.get("type") == "intent":
                    intended.add(int(r["seq"]))
                elif r.get("type") == "done":
                    intended.discard(int(r["seq"]))
                    done.append(ops[int(r["seq"])])
                elif r.get("type") == "end":
                    status = str(r["status"])
                    state = parse_configuration(r["state"], where) if "state" in r else None
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            if isinstance(exc, RlmigError):
                raise
            raise RlmigError(f"{where}: malformed record ({type(exc).__name__}: {exc})") from None
        uncertain = ops[max(intended)] if intended else None
        return JournalRun(
            str(run), str(begin.get("phase")), current, target, ops, tuple(done), uncertain, status, state
        )
