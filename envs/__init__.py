"""Gymnasium environments over the rlmig core (MIG reconfiguration as a masked decision)."""
