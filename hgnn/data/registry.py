"""The dataset registry: one table from name to reader, default location and task.

``load_dataset(name_or_path)`` is the one entry point. A name looks up the table; anything else is
taken as a path to a folder or zip in HGB format (a user's own graph).
"""
from __future__ import annotations

import importlib
import inspect
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch_geometric.data import HeteroData

from hgnn.data import cache
from hgnn.data.source import checksum
from hgnn.data.task import TaskSpec
from hgnn.errors import DataFormatError, HgnnError, UnknownNameError

# Bump when a reader's output changes, so stale cache entries are not reused. 3: HeCo Freebase's
# node counts and GTN's class counts are the releases', no longer the largest id + 1.
READER_VERSION = 4

# Reader parameters that are not options: the files, and the seed that load_dataset passes itself.
NOT_OPTIONS = ("path", "seed")


@dataclass(frozen=True)
class DatasetEntry:
    """One row of the registry.

    ``reader`` is ``"module:function"``; the function takes the dataset's path (``None`` for
    generated datasets) plus ``options`` and returns ``(HeteroData, TaskSpec)``. ``paths`` are
    candidate locations below the data root, the first that exists wins.
    """

    name: str
    reader: str
    paths: tuple[str, ...]
    description: str
    options: dict = field(default_factory=dict)
    cached: bool = True

    def resolve_reader(self) -> Callable[..., tuple[HeteroData, TaskSpec]]:
        module, func = self.reader.split(":")
        return getattr(importlib.import_module(module), func)

    def option_types(self) -> dict[str, object]:
        """The reader's options, name -> type annotation (``object`` where it has none): its
        keyword parameters except ``path`` and ``seed``."""
        reader = self.resolve_reader()
        try:
            hints = typing.get_type_hints(reader)
        except Exception:  # an annotation that does not resolve only loses the type check
            hints = {}
        return {name: hints.get(name, object)
                for name, p in inspect.signature(reader).parameters.items()
                if name not in NOT_OPTIONS
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


_HGB = "hgnn.data.formats.hgb:read_hgb"
DATASETS: dict[str, DatasetEntry] = {
    e.name: e
    for e in [
        DatasetEntry("hgb-dblp", _HGB, ("HGB_DBLP/DBLP.zip", "HGB_DBLP", "DBLP.zip", "DBLP"),
                     "HGB DBLP: authors into 4 research areas (Lv et al., KDD'21)"),
        DatasetEntry("hgb-acm", _HGB, ("HGB_ACM/ACM.zip", "HGB_ACM", "ACM.zip", "ACM"),
                     "HGB ACM: papers into 3 areas"),
        DatasetEntry("hgb-imdb", _HGB, ("HGB_IMDB/IMDB.zip", "HGB_IMDB", "IMDB.zip", "IMDB"),
                     "HGB IMDB: movies into 5 genres, multi-label"),
        DatasetEntry("hgb-freebase", _HGB,
                     ("HGB_Freebase/Freebase.zip", "HGB_Freebase", "Freebase.zip", "Freebase"),
                     "HGB Freebase: books into 7 classes (files not on this machine)"),
        DatasetEntry("ogbn-mag", "hgnn.data.formats.ogb_mag:read_ogbn_mag",
                     ("ogbn_mag", "ogbn-mag", "mag", "mag.zip"),
                     "OGB ogbn-mag, official time split (Hu et al., NeurIPS'20)"),
        DatasetEntry("gtn-acm", "hgnn.data.formats.gtn:read_gtn", ("GTN_ACM/gtn-acm.zip", "GTN_ACM"),
                     "GTN ACM, GTN's fixed split (Yun et al., NeurIPS'19)"),
        DatasetEntry("gtn-dblp", "hgnn.data.formats.gtn:read_gtn",
                     ("GTN_DBLP/gtn-dblp.zip", "GTN_DBLP"), "GTN DBLP, GTN's fixed split"),
        DatasetEntry("gtn-imdb", "hgnn.data.formats.gtn:read_gtn",
                     ("GTN_IMDB/gtn-imdb.zip", "GTN_IMDB"), "GTN IMDB, GTN's fixed split"),
        DatasetEntry("magnn-imdb", "hgnn.data.formats.magnn:read_magnn_imdb",
                     ("MAGNN_IMDB/IMDB_processed.zip", "MAGNN_IMDB"),
                     "MAGNN IMDB (R-HGNN's IMDB), fixed 400/400/3478 split"),
        DatasetEntry("hgsl-yelp", "hgnn.data.formats.hgsl:read_hgsl_yelp", ("HGSL_Yelp",),
                     "HGSL Yelp: businesses into 3 classes, fixed split"),
        DatasetEntry("heco-freebase", "hgnn.data.formats.heco:read_heco_freebase",
                     ("HeCo_Freebase",),
                     "HeCo's movie-centred Freebase, 20-per-class split (40/60 as options)"),
        DatasetEntry("h2gb-mag-year", "hgnn.data.formats.h2gb:read_h2gb_mag_year",
                     ("mag/ogbn_mag", "ogbn_mag", "ogbn-mag", "mag", "mag.zip"),
                     "H2GB mag-year: ogbn-mag papers into 5 year quantiles, random 50/25/25"),
        DatasetEntry("h2gb-oag-cs", "hgnn.data.formats.h2gb_oag:read_h2gb_oag",
                     ("OAG/cs/raw/graph_CS_20190919.pt", "OAG/raw/OAG_CS_20190919.pt",
                      "OAG_CS_20190919.pt", "graph_CS_20190919.pt"),
                     "H2GB oag-cs: OAG computer-science papers into journals, time split",
                     options={"domain": "cs"}),
        DatasetEntry("h2gb-oag-eng", "hgnn.data.formats.h2gb_oag:read_h2gb_oag",
                     ("OAG/engineering/raw/graph_Engineering.pt", "OAG/raw/OAG_Engineering.pt",
                      "OAG_Engineering.pt", "graph_Engineering.pt"),
                     "H2GB oag-eng: OAG engineering papers into journals, time split",
                     options={"domain": "engineering"}),
        DatasetEntry("h2gb-oag-chem", "hgnn.data.formats.h2gb_oag:read_h2gb_oag",
                     ("OAG/chemistry/raw/graph_Chemistry.pt", "OAG/raw/OAG_Chemistry.pt",
                      "OAG_Chemistry.pt", "graph_Chemistry.pt"),
                     "H2GB oag-chem: OAG chemistry papers into journals, time split",
                     options={"domain": "chemistry"}),
        DatasetEntry("h2gb-rcdd", "hgnn.data.formats.h2gb_rcdd:read_h2gb_rcdd",
                     ("RCDD/raw", "RCDD", "AliRCD_ICDM.zip"),
                     "H2GB RCDD: Alibaba risky items (positive-class F1), 20% holdout"),
        DatasetEntry("h2gb-ieee-cis", "hgnn.data.formats.h2gb_ieee:read_h2gb_ieee_cis",
                     ("IEEE-CIS/raw", "IEEE-CIS", "IEEE-CIS.zip"),
                     "H2GB IEEE-CIS-G: fraudulent transactions (positive-class F1), time split"),
        DatasetEntry("h2gb-pokec", "hgnn.data.formats.h2gb_pokec:read_h2gb_pokec",
                     ("Pokec/raw", "Pokec"),
                     "H2GB H-Pokec: users' gender with hobby clubs, random 50/25/25"),
        DatasetEntry("h2gb-pdns", "hgnn.data.formats.h2gb_pdns:read_h2gb_pdns",
                     ("PDNS/raw", "PDNS", "PDNS.zip"),
                     "H2GB PDNS: malicious domains (positive-class F1), H2GB's 70/20/10 split"),
        DatasetEntry("synthetic", "hgnn.data.synthetic:read_synthetic", (),
                     "seeded typed graph with a heterophily knob; needs no files", cached=False),
        DatasetEntry("synthetic-mag", "hgnn.data.synthetic:read_synthetic", (),
                     "synthetic graph of ogbn-mag's shape (1.9M nodes, 21M edges)",
                     options={"preset": "mag"}, cached=False),
    ]
}


def data_root(root: str | Path | None = None) -> Path:
    """``root``, else ``$HGNN_DATA``, else ``../shared/data`` (beside the working directory or
    beside the checkout) when it exists, else ``./data``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("HGNN_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    for candidate in (Path.cwd().parent / "shared" / "data", repo.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return Path("data")


def dataset_path(name: str, root: str | Path | None = None) -> Path:
    """Where the files of a registered dataset are expected; the first candidate that exists."""
    entry = get_entry(name)
    base = data_root(root)
    for rel in entry.paths:
        if (base / rel).exists():
            return base / rel
    tried = ", ".join(str(base / rel) for rel in entry.paths)
    raise DataFormatError(base / entry.paths[0],
                          f"dataset '{name}' not found (looked for {tried}); set HGNN_DATA or --root")


def get_entry(name: str) -> DatasetEntry:
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise UnknownNameError(f"unknown dataset '{name}' (known: {known}; or give a path to a "
                               "folder or zip in HGB format)") from None


def entry_for(name: str) -> DatasetEntry:
    """The registry row of ``name``, or a row for a folder / zip in HGB format when it is a path."""
    if is_path_like(name):
        return DatasetEntry(str(name), _HGB, (), "custom dataset in HGB format")
    return get_entry(name)


def check_options(dataset: str | DatasetEntry, options: dict) -> dict:
    """``options`` (``--data KEY=VALUE``) checked against the parameters of the dataset's reader: an
    unknown name, or a value of the wrong type (``homophily=abc``), is an :class:`HgnnError` naming
    the dataset and the option. Returns the options with numbers converted where the reader takes a
    float or a string. :func:`load_dataset` calls it; a command can call it before any other work."""
    entry = dataset if isinstance(dataset, DatasetEntry) else entry_for(dataset)
    known = entry.option_types()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UnknownNameError(f"{entry.name}: unknown option(s) {unknown} (known: "
                               f"{', '.join(known) or 'none'})")
    out = {}
    for key, value in options.items():
        matched, value = _match_type(value, known[key])
        if not matched:
            raise HgnnError(f"{entry.name}: option '{key}' expects {_describe_type(known[key])}, "
                            f"got {value!r}")
        out[key] = value
    return out


def _match_type(value, hint) -> tuple[bool, object]:
    """``(True, value converted)`` when ``value`` fits the annotation ``hint``, else ``(False,
    value)``. Covers what readers annotate: numbers, strings, booleans, unions with ``None`` and
    ``dict`` of those; any other annotation accepts every value."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is object or hint is typing.Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            matched, converted = _match_type(value, arg)
            if matched:
                return True, converted
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is str:  # a YAML number is text the user typed: "domain_file=2" means "2"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, str(value)
        return isinstance(value, str), value
    if origin is dict:
        if not isinstance(value, dict):
            return False, value
        key_type, value_type = args or (object, object)
        out = {}
        for k, v in value.items():
            k_ok, k = _match_type(k, key_type)
            v_ok, v = _match_type(v, value_type)
            if not (k_ok and v_ok):
                return False, value
            out[k] = v
        return True, out
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return True, value


def _describe_type(hint) -> str:
    """``float | None`` -> ``"a number (or null)"``, for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe_type(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"{text} (or null)" if type(None) in args else text
    if origin is dict:
        key_type, value_type = args or (object, object)
        return f"a mapping {{{_short_type(key_type)}: {_short_type(value_type)}}}"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _short_type(hint) -> str:
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def is_path_like(name: str) -> bool:
    return name not in DATASETS and (os.sep in name or "/" in name or name.endswith(".zip")
                                     or Path(name).exists())


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    seed: int = 0,
    use_cache: bool = True,
    **options,
) -> tuple[HeteroData, TaskSpec]:
    """Load a dataset by registry name, or a folder / zip in HGB format by path.

    Args:
        name: a registry name (``hgnn datasets list``) or a path.
        root: data root for registry names (default: see :func:`data_root`).
        seed: seed of the train/validation holdout split where the protocol draws one (HGB), and
            of generated data (``synthetic``).
        use_cache: reuse / write the processed cache (``$HGNN_CACHE``).
        **options: reader options (e.g. ``split=40`` for ``heco-freebase``).

    Returns:
        ``(data, task)``: a PyG ``HeteroData`` with ``x`` per featured node type, ``edge_index`` per
        ``(src, rel, dst)``, and ``y`` / ``train_mask`` / ``val_mask`` / ``test_mask`` on the target
        type; and the :class:`TaskSpec`.
    """
    entry = entry_for(name)
    options = check_options(entry, options)  # before any file is looked for or read
    path: Path | None = None
    if is_path_like(name):
        path = Path(name)
    elif entry.paths:
        path = dataset_path(name, root)
    opts = {**entry.options, **options}
    reader = entry.resolve_reader()
    if path is None:
        data, task = reader(None, seed=seed, **opts)
        return data, task

    key = None
    if entry.cached and use_cache:
        tag = "-".join(f"{k}={v}" for k, v in sorted(opts.items()))
        digest = checksum(path)[:24]  # a single file need not be a zip: the reader checks it
        safe = entry.name.replace("/", "_").replace(os.sep, "_")[-40:]
        key = f"{Path(safe).name}-v{READER_VERSION}-{digest}" + (f"-{tag}" if tag else "")
        hit = cache.load(key)
        if hit is not None:
            data, task = hit
            return apply_split(data, task, seed)
    data, task = reader(path, **opts)
    if key is not None:
        cache.save(key, data, task)
    return apply_split(data, task, seed)


def apply_split(data: HeteroData, task: TaskSpec, seed: int) -> tuple[HeteroData, TaskSpec]:
    """Draw the validation holdout for ``"holdout"`` tasks; fixed splits pass through."""
    if task.split != "holdout":
        return data, task
    from hgnn.data.splits import holdout_split

    return holdout_split(data, task, seed)
