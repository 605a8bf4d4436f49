"""PyG-compatible heterogeneous layers: they take ``x_dict`` and ``edge_index_dict``."""
from hgnn.nn.hgt_conv import HGTConv
from hgnn.nn.rgcn_conv import RGCNConv
from hgnn.nn.type_encoder import TypeEncoder

__all__ = ["HGTConv", "RGCNConv", "TypeEncoder"]
