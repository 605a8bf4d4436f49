"""One training engine for every model: regimes, metrics, checkpoints, run records."""
