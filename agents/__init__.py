"""Learning: imitation of the ILP oracle, MaskablePPO fine-tuning, checkpoint export (needs the
`train` extra: torch, stable-baselines3, sb3-contrib). Run a training with ``rlmig train CONFIG``."""
