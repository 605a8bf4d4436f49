"""PyG-compatible heterogeneous layers: they take ``x_dict`` and ``edge_index_dict``."""
from hgnn.nn.gtn_conv import GTNConv
from hgnn.nn.h2gformer_layer import H2GFormerLayer
from hgnn.nn.hetero_label_encoder import MaskedLabelEncoder
from hgnn.nn.hgt_conv import HGTConv
from hgnn.nn.latte import LATTE
from hgnn.nn.latte_conv import LATTEConv
from hgnn.nn.relation_fusing import RelationFusing
from hgnn.nn.rgcn_conv import RGCNConv
from hgnn.nn.rhgnn_conv import RHGNNConv
from hgnn.nn.rphgnn import rphgnn_precompute, sparse_random_projection
from hgnn.nn.rphgnn_encoder import RpHGNNEncoder
from hgnn.nn.type_encoder import TypeEncoder

__all__ = ["HGTConv", "RGCNConv", "RpHGNNEncoder", "TypeEncoder", "rphgnn_precompute",
           "sparse_random_projection"]
__all__ += ["GTNConv", "H2GFormerLayer", "LATTE", "LATTEConv", "MaskedLabelEncoder", "RHGNNConv",
            "RelationFusing"]
