"""Run infrastructure: lifecycle, checkpoints, the row log, the folder lock, atomic stores, seeds, run ids, event loops."""
