"""Reading what users hand rlmig: one layer for every file the tool reads (workloads, plans, journals,
checkpoint cards, mig-parted configs, rate files, training configs, the agent's state).

Usage::

    >>> from rlmig.inputs import load_yaml
    >>> load_yaml("gpus: 2\\nname: demo\\n", "workload.yaml")
    {'gpus': 2, 'name': 'demo'}
    >>> load_yaml("a: &x [1]\\nb: *x\\n", "w.yaml")
    Traceback (most recent call last):
    ...
    rlmig.errors.ConfigError: w.yaml: line 2: YAML aliases are not accepted

Every failure is a `ConfigError` (an `RlmigError`) of one line that names the file and, where the parser
knows it, the line: bytes that are not UTF-8, a file too large, YAML aliases (a few hundred bytes of
nested aliases expand into gigabytes), duplicate keys (YAML and JSON both take the last silently),
nesting deeper than `MAX_DEPTH`, and syntax errors. `quote` shortens any value a message shows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from rlmig.errors import ConfigError

MAX_BYTES = 64 * 1024 * 1024
"""The largest file read (a workload, a plan or a journal is far smaller; a bound keeps memory sane)."""

MAX_DEPTH = 64
"""The deepest nesting of mappings and lists accepted (the formats rlmig reads need fewer than 10)."""


def one_line(text: str) -> str:
    """`text` with its line breaks shown as ``\\n``: a message stays one line whatever it quotes."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def quote(value: object, limit: int = 80) -> str:
    """`value`'s repr, cut to at most `limit` characters (an integer too long to print is described)."""
    try:
        text = repr(value)
    except ValueError:  # Python refuses to print integers of more than 4300 digits
        digits = int(abs(value).bit_length() * 0.30103) + 1 if isinstance(value, int) else 0
        return f"an integer of about {digits} digits"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_text(path: str | Path, what: str = "file", max_bytes: int = MAX_BYTES) -> str:
    """The UTF-8 text of `path`; one-line `ConfigError` when it cannot be read, is too large or is not
    UTF-8."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{path}: {what} of {size} bytes, over the {max_bytes} this reads")
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases, duplicate keys or deep nesting."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise _Refused(
                mark,
                "YAML aliases are not accepted",  # a few nested ones expand into gigabytes
            )
        depth = getattr(self, "_depth", 0)
        if depth >= MAX_DEPTH:
            raise _Refused(self.peek_event().start_mark, f"nested deeper than {MAX_DEPTH} levels")
        self._depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise _Refused(key_node.start_mark, f"duplicate key {quote(key)}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 reads 1e6 and 6e11 as numbers; PyYAML (YAML 1.1) needs a dot and would read them as text.
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class _Refused(Exception):
    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML `text` (from `where`, for messages) with `_StrictLoader`; one-line `ConfigError`."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except _Refused as exc:
        line = f"line {exc.mark.line + 1}: " if exc.mark is not None else ""
        raise ConfigError(f"{where}: {line}{exc.message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML: {line}{problem}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deep") from None


def load_json(text: str, where: str) -> Any:
    """Parse JSON `text` (from `where`), refusing duplicate keys and deep nesting; one-line
    `ConfigError`."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise ConfigError(f"{where}: duplicate key {quote(key)}")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deep") from None


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """`read_text` then `load_yaml`."""
    return load_yaml(read_text(path, what), str(path))


def read_json(path: str | Path, what: str = "file") -> Any:
    """`read_text` then `load_json`."""
    return load_json(read_text(path, what), str(path))
