"""Reader for H2GB's OAG graphs ``oag-cs``, ``oag-eng`` and ``oag-chem`` (``H2GB/datasets/oag_dataset.py``).

Each domain is one ``torch.save`` file holding the GPT-GNN preprocessed graph as a dict:

* ``node_forward[type]``: ``{original id: row}`` for every node type (``paper``, ``author``,
  ``field``, ``affiliation``, ``venue``);
* ``node_feature[type]``: a table (a pandas DataFrame in H2GB's files) whose row ``i`` has
  ``id`` (mapped to ``i`` by ``node_forward``), ``emb`` (the feature vector; 768-d XLNet title
  embeddings for papers) and, for papers, ``time`` (the publication year);
* ``edge_list[target type][source type][relation][target row][source row]``, both directions
  stored, reverse relations named ``rev_*``.

As in H2GB: every type but ``venue`` becomes a node type with ``x = emb``; every relation not named
``rev_*`` becomes an edge type ``(source, relation, target)``, except paper -> venue; a paper's label
is its journal (``edge_list["venue"]["paper"]["PV_Journal"]``), venues numbered in the order they are
met; labelled papers up to 2016 train, 2017 validate, 2018 on test.

File names: H2GB's Google-Drive release keeps ``<root>/OAG/<name>/raw/graph_<Name>.pt``; its Hugging
Face release names the files ``OAG_<Name>.pt`` (``<Name>``: ``CS_20190919``, ``Engineering``,
``Chemistry``). Either is accepted, given directly or in a folder.

The file is unpickled by a restricted unpickler: only plain containers (``defaultdict`` included),
numpy arrays and (when pandas is installed) the pandas classes a DataFrame pickle needs are admitted,
so a damaged or hostile file cannot run code. Tables may be pandas DataFrames (reading those needs
pandas) or plain ``{column: sequence}`` dicts.
"""
from __future__ import annotations

import importlib
import io
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData

from hgnn.data.formats.h2gb import set_masks
from hgnn.data.task import TaskSpec
from hgnn.errors import DataFormatError, UnknownNameError

DOMAINS = {"cs": "CS_20190919", "engineering": "Engineering", "chemistry": "Chemistry"}
TARGET = "paper"
LABEL_RELATION = ("venue", "paper", "PV_Journal")  # edge_list[target][source][relation]
TRAIN_UNTIL, VAL_YEAR = 2016, 2017


def oag_file_names(domain: str) -> tuple[str, str]:
    """The two spellings of a domain's file: Hugging Face's and Google Drive's."""
    return f"OAG_{DOMAINS[domain]}.pt", f"graph_{DOMAINS[domain]}.pt"


def read_h2gb_oag(path: str | Path, domain: str = "cs", **options) -> tuple[HeteroData, TaskSpec]:
    """Read one H2GB OAG domain (``cs``, ``engineering`` or ``chemistry``).

    Args:
        path: the ``.pt`` file, or a folder holding it (directly, in ``raw/``, or in
            ``<domain>/raw/`` as H2GB lays out ``<root>/OAG``).
        domain: which subject domain, selecting the file name.
    """
    if options:
        raise UnknownNameError(f"the OAG reader takes only 'domain' (got {sorted(options)})")
    if domain not in DOMAINS:
        raise UnknownNameError(f"OAG domain must be one of {sorted(DOMAINS)}, got {domain!r}")
    file = _locate(Path(path), domain)
    graph = _load(file)
    where = str(file)
    for key in ("node_forward", "node_feature", "edge_list"):
        if not isinstance(graph.get(key), Mapping):
            raise DataFormatError(where, f"'{key}' is missing or not a dict")
    forward, features, edge_list = graph["node_forward"], graph["node_feature"], graph["edge_list"]

    data = HeteroData()
    sizes: dict[str, int] = {}
    for node_type, ids in forward.items():
        if node_type == "venue":
            continue
        if node_type not in features:
            raise DataFormatError(where, f"node_feature has no table for node type '{node_type}'")
        table = _columns(features[node_type], where, f"node_feature['{node_type}']")
        n = len(ids)
        for col in ("id", "emb") + (("time",) if node_type == TARGET else ()):
            if col not in table:
                raise DataFormatError(where, f"node_feature['{node_type}'] has no column '{col}'")
            if len(table[col]) != n:
                raise DataFormatError(where, f"node_feature['{node_type}'] has {len(table[col])} "
                                      f"rows, node_forward['{node_type}'] has {n} ids")
        for row, node_id in enumerate(table["id"]):
            if ids.get(_scalar(node_id)) != row:
                raise DataFormatError(where, f"node_feature['{node_type}'] row {row} has id "
                                      f"{_scalar(node_id)!r}, which node_forward does not map to {row}")
        data[node_type].x = _stack(table["emb"], where, node_type)
        data[node_type].num_nodes = n
        sizes[node_type] = n
        if node_type == TARGET:
            years = np.asarray([_scalar(t) for t in table["time"]])
            if years.size and not np.issubdtype(years.dtype, np.integer):
                raise DataFormatError(where, "node_feature['paper']['time'] holds non-integer years")
            data[TARGET].year = torch.as_tensor(years.astype(np.int64)).view(-1)
    if TARGET not in sizes:
        raise DataFormatError(where, "node_forward has no 'paper' type")

    for tar, by_src in edge_list.items():
        for src, by_rel in by_src.items():
            for rel, pairs in by_rel.items():
                if str(rel).startswith("rev_") or (src == "paper" and tar == "venue"):
                    continue
                for end in (src, tar):
                    if end not in sizes:
                        raise DataFormatError(where, f"edge_list relation ({src}, {rel}, {tar}) "
                                              f"names node type '{end}', which has no features")
                edge_index = _edges(pairs, sizes[src], sizes[tar], where, (src, rel, tar))
                key = (src, str(rel), tar)
                if key in data.edge_types:
                    edge_index = torch.cat([data[key].edge_index, edge_index], dim=1)
                data[key].edge_index = edge_index

    y, num_classes = _labels(edge_list, sizes[TARGET], where)
    paper = data[TARGET]
    paper.y = y
    year = paper.year
    labelled = (y >= 0).numpy()
    set_masks(paper, sizes[TARGET],
              np.flatnonzero(labelled & (year <= TRAIN_UNTIL).numpy()),
              np.flatnonzero(labelled & (year == VAL_YEAR).numpy()),
              np.flatnonzero(labelled & (year > VAL_YEAR).numpy()))
    task = TaskSpec(target=TARGET, num_classes=num_classes, metrics=("accuracy",), split="fixed")
    return data, task


def _locate(path: Path, domain: str) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataFormatError(path, "no such file or folder")
    names = oag_file_names(domain)
    for folder in (path, path / "raw", path / domain / "raw"):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise DataFormatError(path / "raw" / names[0], f"missing file (also looked for {names[1]} and "
                          f"in {domain}/raw/)")


# Globals a graph pickle may name, as (module, name) spelled inside it -> where the object lives
# now. Containers and numpy arrays always; pandas' DataFrame machinery (pandas 1.x to 3.x
# spellings) when pandas is installed.
_PLAIN = {
    ("builtins", n): ("builtins", n)
    for n in ("dict", "list", "set", "frozenset", "tuple", "slice", "int", "float", "str", "bytes",
              "bytearray", "complex", "bool")
}
_PLAIN.update({
    ("collections", "OrderedDict"): ("collections", "OrderedDict"),
    ("collections", "defaultdict"): ("collections", "defaultdict"),
    ("_codecs", "encode"): ("_codecs", "encode"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
})
_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"
for _core in ("numpy.core", "numpy._core"):
    for _fn in ("_reconstruct", "scalar"):
        _PLAIN[(f"{_core}.multiarray", _fn)] = (f"{_NUMPY_CORE}.multiarray", _fn)
_PANDAS = {
    ("pandas", "DataFrame"): ("pandas", "DataFrame"),
    ("pandas.core.frame", "DataFrame"): ("pandas", "DataFrame"),
    ("pandas", "Series"): ("pandas", "Series"),
    ("pandas.core.series", "Series"): ("pandas", "Series"),
    ("pandas.core.internals.managers", "BlockManager"):
        ("pandas.core.internals.managers", "BlockManager"),
    ("pandas.core.internals.managers", "SingleBlockManager"):
        ("pandas.core.internals.managers", "SingleBlockManager"),
    ("pandas._libs.internals", "_unpickle_block"): ("pandas._libs.internals", "_unpickle_block"),
    ("pandas.core.internals.blocks", "new_block"): ("pandas.core.internals.blocks", "new_block"),
    ("pandas.core.indexes.base", "_new_Index"): ("pandas.core.indexes.base", "_new_Index"),
    ("pandas", "Index"): ("pandas", "Index"),
    ("pandas.core.indexes.base", "Index"): ("pandas", "Index"),
    ("pandas.core.indexes.numeric", "Int64Index"): ("pandas", "Index"),
    ("pandas.core.indexes.numeric", "Float64Index"): ("pandas", "Index"),
    ("pandas", "RangeIndex"): ("pandas", "RangeIndex"),
    ("pandas.core.indexes.range", "RangeIndex"): ("pandas", "RangeIndex"),
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"):
        ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
    ("pandas.arrays", "StringArray"): ("pandas.arrays", "StringArray"),
    ("pandas.core.arrays.string_", "StringArray"): ("pandas.arrays", "StringArray"),
    ("pandas", "StringDtype"): ("pandas", "StringDtype"),
    ("pandas.core.arrays.string_", "StringDtype"): ("pandas", "StringDtype"),
}
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a pre-1.6 torch.save file


class _GraphUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals, so unpickling cannot call anything else."""

    def __init__(self, stream: io.BytesIO, where: str) -> None:
        super().__init__(stream)
        self._where = where

    def find_class(self, module: str, name: str):
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
        target = _PLAIN.get((module, name)) or _PANDAS.get((module, name))
        obj = None if target is None else _resolve(*target)
        if obj is None:
            hint = ""
            if (module, name) in _PANDAS or module.split(".")[0] == "pandas":
                hint = (" (the file holds pandas objects: install pandas to read it)"
                        if _resolve("pandas", "DataFrame") is None else
                        " (a pandas object outside the admitted DataFrame classes)")
            raise DataFormatError(self._where, f"cannot be unpickled safely: it refers to "
                                  f"{module}.{name}, which is not admitted{hint}")
        return obj

    def persistent_load(self, pid):
        raise DataFormatError(self._where, "holds torch tensors or storages; expected the GPT-GNN "
                              "graph dict of plain containers, numpy arrays and tables")


def _resolve(module: str, name: str):
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _load(file: Path) -> dict:
    """The graph dict from a ``torch.save`` file (zip or pre-1.6 format) or a plain pickle."""
    where = str(file)
    try:
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as zf:
                names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == "data.pkl"]
                if not names:
                    raise DataFormatError(where, "a zip without data.pkl, not a torch.save file")
                stream = io.BytesIO(zf.read(names[0]))
            graph = _GraphUnpickler(stream, where).load()
        else:
            stream = io.BytesIO(file.read_bytes())
            graph = _GraphUnpickler(stream, where).load()
            if graph == _LEGACY_TORCH_MAGIC:
                _GraphUnpickler(stream, where).load()  # protocol version
                _GraphUnpickler(stream, where).load()  # sys_info
                graph = _GraphUnpickler(stream, where).load()
    except DataFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError,
            IndexError, OSError, zipfile.BadZipFile, RecursionError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DataFormatError(where, f"not a readable torch.save or pickle file of the OAG graph "
                              f"dict ({reason})") from None
    if not isinstance(graph, Mapping):
        raise DataFormatError(where, f"holds a {type(graph).__name__}, expected the graph dict")
    return graph


def _columns(table, where: str, what: str) -> Mapping:
    """A table as ``{column: sequence}``: a pandas DataFrame or a plain dict of columns."""
    if isinstance(table, Mapping):
        return table
    if hasattr(table, "columns") and hasattr(table, "__getitem__"):  # a pandas DataFrame
        return {str(c): table[c].tolist() for c in table.columns}
    raise DataFormatError(where, f"{what} is a {type(table).__name__}, not a table")


def _scalar(value):
    return value.item() if isinstance(value, np.generic) else value


def _stack(embs, where: str, node_type: str) -> torch.Tensor:
    try:
        x = np.stack([np.asarray(e, dtype=np.float32) for e in embs]) if len(embs) else \
            np.zeros((0, 0), dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise DataFormatError(where, f"node_feature['{node_type}']['emb'] rows are not vectors of "
                              f"one length ({exc})") from None
    if x.ndim != 2:
        raise DataFormatError(where, f"node_feature['{node_type}']['emb'] rows are not vectors")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise DataFormatError(where, f"node_feature['{node_type}']['emb'] row {bad[0]} is NaN or "
                              "infinite")
    return torch.from_numpy(x)


def _edges(pairs, n_src: int, n_tar: int, where: str, key: tuple) -> torch.Tensor:
    """``pairs[target row][source row]`` -> ``[2, E]`` (source, target), in stored order."""
    src, tar = [], []
    if not isinstance(pairs, Mapping):
        raise DataFormatError(where, f"edge_list entry {key} is not a dict")
    for tar_id, src_ids in pairs.items():
        if not isinstance(src_ids, Mapping):
            raise DataFormatError(where, f"edge_list entry {key}[{_scalar(tar_id)!r}] is not a dict")
        tar_id = _scalar(tar_id)
        for src_id in src_ids:
            src.append(_scalar(src_id))
            tar.append(tar_id)
    try:
        edge_index = np.asarray([src, tar], dtype=np.int64).reshape(2, -1)
    except (ValueError, TypeError, OverflowError):
        raise DataFormatError(where, f"edge_list entry {key} has non-integer node rows") from None
    for row, n, what in ((0, n_src, key[0]), (1, n_tar, key[2])):
        bad = np.flatnonzero((edge_index[row] < 0) | (edge_index[row] >= n))
        if bad.size:
            raise DataFormatError(where, f"edge_list entry {key}: {what} row {edge_index[row, bad[0]]}"
                                  f" is out of range [0, {n})")
    return torch.from_numpy(edge_index)


def _labels(edge_list: Mapping, n_papers: int, where: str) -> tuple[torch.Tensor, int]:
    tar, src, rel = LABEL_RELATION
    try:
        pairs = edge_list[tar][src][rel]
    except (KeyError, TypeError):
        raise DataFormatError(where, f"no label relation edge_list['{tar}']['{src}']['{rel}']"
                              ) from None
    y = np.full(n_papers, -1, dtype=np.int64)
    venue_class: dict = {}
    for venue, papers in pairs.items():
        for paper in papers:  # a venue gets its class with its first paper, as in H2GB
            cls = venue_class.setdefault(_scalar(venue), len(venue_class))
            paper = _scalar(paper)
            if not isinstance(paper, int) or not 0 <= paper < n_papers:
                raise DataFormatError(where, f"label relation names paper row {paper!r}, out of "
                                      f"range [0, {n_papers})")
            y[paper] = cls
    return torch.from_numpy(y), len(venue_class)
