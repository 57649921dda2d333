"""The engine: NumPy only. Layers and models, losses, optimizers, schedules, metrics and
one training run. Nothing here imports yaml, pandas or rich, reads a config file or
prints; the sweep layer above drives it."""
