"""Dataset statistics (``hgnn datasets info``) and the metagraph drawing (``--schema``)."""
from __future__ import annotations

from pathlib import Path

from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec
from hgnn.errors import HgnnError


def describe(data: HeteroData, task: TaskSpec) -> dict:
    """JSON-ready statistics: counts per type and relation, feature widths, classes, split sizes."""
    store = data[task.target]
    split = {name: int(store[f"{name}_mask"].sum()) if f"{name}_mask" in store else 0
             for name in ("train", "val", "test")}
    return {
        "num_nodes": int(sum(data[t].num_nodes for t in data.node_types)),
        "num_edges": int(sum(data[et].num_edges for et in data.edge_types)),
        "node_types": {t: int(data[t].num_nodes) for t in data.node_types},
        "edge_types": {"__".join(et): int(data[et].num_edges) for et in data.edge_types},
        "feature_dims": {t: int(data[t].x.size(1)) if "x" in data[t] else 0
                         for t in data.node_types},
        "featureless": list(task.featureless),
        "target": task.target,
        "num_classes": task.num_classes,
        "multilabel": task.multilabel,
        "class_names": list(task.class_names) if task.class_names else None,
        "metrics": list(task.metrics),
        "split": split,
        "split_kind": task.split,
        "split_seed": task.split_seed,
    }


def format_summary(name: str, info: dict) -> str:
    """Human-readable form of :func:`describe`."""
    lines = [f"{name}: {info['num_nodes']:,} nodes, {info['num_edges']:,} edges, "
             f"{info['num_classes']} classes{' (multi-label)' if info['multilabel'] else ''}, "
             f"target '{info['target']}'"]
    lines.append("  node types:")
    for t, n in info["node_types"].items():
        dim = info["feature_dims"][t]
        lines.append(f"    {t:<20} {n:>12,}  {'features ' + str(dim) if dim else 'no features'}")
    lines.append("  relations:")
    for et, n in info["edge_types"].items():
        src, rel, dst = et.split("__")
        lines.append(f"    {f'{src} -[{rel}]-> {dst}':<44} {n:>12,}")
    s = info["split"]
    how = info["split_kind"] + (f", seed {info['split_seed']}" if info["split_seed"] is not None
                                else "")
    lines.append(f"  split ({how}): train {s['train']:,} / val {s['val']:,} / test {s['test']:,}")
    lines.append(f"  metrics: {', '.join(info['metrics'])}")
    return "\n".join(lines)


SCHEMA_FORMATS = (".png", ".svg", ".pdf")


def check_schema_path(path: str | Path) -> None:
    """Refuse a ``--schema`` file whose extension names no format it can be drawn in."""
    if Path(path).suffix.lower() not in SCHEMA_FORMATS:
        raise HgnnError(f"--schema {path}: the file name must end in "
                        f"{', '.join(SCHEMA_FORMATS)} (the image format)")


def draw_schema(data: HeteroData, task: TaskSpec, path: str | Path, title: str = "") -> Path:
    """Draw the metagraph: node types as nodes (with counts), relations as labelled arrows."""
    check_schema_path(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import networkx as nx
    except ImportError:
        raise HgnnError("--schema needs matplotlib and networkx: pip install 'hgnn[plot]'") from None
    g = nx.MultiDiGraph()
    for t in data.node_types:
        g.add_node(t)
    for et in data.edge_types:
        g.add_edge(et[0], et[2], label=f"{et[1]} ({data[et].num_edges:,})")
    pos = nx.circular_layout(g) if len(g) > 2 else nx.spring_layout(g, seed=0)
    fig, ax = plt.subplots(figsize=(8, 6))
    colors = ["#f4a261" if t == task.target else "#8ecae6" for t in g.nodes]
    nx.draw_networkx_nodes(g, pos, node_color=colors, node_size=2600, ax=ax)
    labels = {t: f"{t}\n{data[t].num_nodes:,}" for t in g.nodes}
    nx.draw_networkx_labels(g, pos, labels=labels, font_size=9, ax=ax)
    for u, v, k, d in g.edges(keys=True, data=True):
        rad = 0.0 if u == v else 0.15 + 0.12 * k
        nx.draw_networkx_edges(g, pos, edgelist=[(u, v)], connectionstyle=f"arc3,rad={rad}",
                               arrows=True, arrowsize=15, node_size=2600, ax=ax)
        (x1, y1), (x2, y2) = pos[u], pos[v]
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        # Offset the label towards the arc's bulge so parallel relations stay readable.
        ox, oy = (y2 - y1) * rad * 0.5, (x1 - x2) * rad * 0.5
        if u == v:
            my += 0.3 + 0.08 * k
        ax.text(mx + ox, my + oy, d["label"], fontsize=7, ha="center", va="center",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})
    ax.set_title(title or f"metagraph (target: {task.target})")
    ax.axis("off")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    except OSError as exc:
        raise HgnnError(f"--schema {path}: cannot write ({exc.strerror})") from None
    finally:
        plt.close(fig)
    return path
