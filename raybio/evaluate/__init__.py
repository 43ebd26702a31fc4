"""Downstream evaluation: fine-tune and probe checkpoints on labelled tasks (docs/evaluation.md)."""
