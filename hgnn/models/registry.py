"""The model registry: one table from name to class."""
from __future__ import annotations

import importlib

from hgnn.errors import UnknownNameError
from hgnn.models.base import HeteroModel

MODELS: dict[str, str] = {
    "mlp": "hgnn.models.mlp:MLP",
    "rgcn": "hgnn.models.rgcn:RGCN",
    "hgt": "hgnn.models.hgt:HGT",
    "rphgnn": "hgnn.models.rphgnn:RpHGNN",
    "rhgnn": "hgnn.models.rhgnn:RHGNN",
    "latte": "hgnn.models.latte:LATTE",
    "h2gformer": "hgnn.models.h2gformer:H2GFormer",
    "gtn": "hgnn.models.gtn:GTN",
}
DEFAULT_MODEL = "rphgnn"


def get_model_class(name: str) -> type[HeteroModel]:
    """The class registered under ``name``; an unknown name is a one-line user error."""
    try:
        module, cls = MODELS[name].split(":")
    except KeyError:
        raise UnknownNameError(f"unknown model '{name}' (known: {', '.join(sorted(MODELS))})") from None
    return getattr(importlib.import_module(module), cls)
