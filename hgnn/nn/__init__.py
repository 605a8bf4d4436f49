"""PyG-compatible heterogeneous layers: they take ``x_dict`` and ``edge_index_dict``."""
from hgnn.nn.hgt_conv import HGTConv
from hgnn.nn.rgcn_conv import RGCNConv
from hgnn.nn.rphgnn import rphgnn_precompute, sparse_random_projection
from hgnn.nn.rphgnn_encoder import RpHGNNEncoder
from hgnn.nn.type_encoder import TypeEncoder

__all__ = ["HGTConv", "RGCNConv", "RpHGNNEncoder", "TypeEncoder", "rphgnn_precompute",
           "sparse_random_projection"]
