"""The training side of the core: models, the architecture choice, the training loop,
baselines, quality checks, evaluation on a checkpoint's test split, and checkpoints.

Nothing is imported here: torch loads only when a module that needs it is imported.
"""
