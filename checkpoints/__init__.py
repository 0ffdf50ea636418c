"""Trained policies that ship with rlmig, each in its own folder with a model card."""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS_DIR = Path(__file__).resolve().parent


def shipped() -> list[Path]:
    """The folders of the checkpoints that ship with this installation."""
    return sorted(p for p in CHECKPOINTS_DIR.iterdir() if p.is_dir() and (p / "card.json").exists())


def shipped_for(gpu: str) -> Path | None:
    """The shipped checkpoint for GPU model `gpu` (its card's ``gpu_model``), or None."""
    import json

    for folder in shipped():
        if json.loads((folder / "card.json").read_text()).get("gpu_model") == gpu:
            return folder
    return None
