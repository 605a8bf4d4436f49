"""Command-line interface: ``hgnn datasets ...`` (training and benchmarks follow)."""
