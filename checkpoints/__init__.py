"""Trained policies that ship with rlmig, each in its own folder with a model card."""

from __future__ import annotations

import functools
import json
from pathlib import Path

CHECKPOINTS_DIR = Path(__file__).resolve().parent


def shipped() -> list[Path]:
    """The folders of the checkpoints that ship with this installation."""
    return sorted(p for p in CHECKPOINTS_DIR.iterdir() if p.is_dir() and (p / "card.json").exists())


@functools.cache
def shipped_models() -> dict[str, Path]:
    """The shipped checkpoints by GPU model (their cards' ``gpu_model``), read once."""
    return {json.loads((folder / "card.json").read_text())["gpu_model"]: folder for folder in shipped()}


def shipped_for(gpu: str) -> Path | None:
    """The shipped checkpoint for GPU model `gpu`, or None."""
    return shipped_models().get(gpu)
