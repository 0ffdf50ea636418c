"""Trained policies that ship with rlmig, each in its own folder with a model card."""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS_DIR = Path(__file__).resolve().parent


def shipped() -> list[Path]:
    """The folders of the checkpoints that ship with this installation."""
    return sorted(p for p in CHECKPOINTS_DIR.iterdir() if p.is_dir() and (p / "card.json").exists())
