"""Model zoo: full models built from hgnn.nn layers, and the model registry."""
from hgnn.models.base import HeteroModel
from hgnn.models.registry import DEFAULT_MODEL, MODELS, get_model_class

__all__ = ["DEFAULT_MODEL", "MODELS", "HeteroModel", "get_model_class"]
