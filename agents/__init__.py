"""Learning: imitation of the ILP oracle, MaskablePPO fine-tuning, checkpoint export."""
