"""Modality-free machinery shared by both tracks: the training loop, update schedules, checkpoints, logging."""
