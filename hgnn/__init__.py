"""hgnn: heterogeneous graph neural networks on PyG, with typed data, faithful models and fused kernels."""

__version__ = "0.1.0"
