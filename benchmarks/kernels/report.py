"""Markdown table and plot for benchmarks/kernels/bench.py's JSON."""
from __future__ import annotations

from pathlib import Path


def _lookup(rows, **key):
    for r in rows:
        if all(r.get(k) == v for k, v in key.items()):
            return r
    return None


def write_report(result: dict, md_path: Path, png_path: Path) -> None:
    rows, att, m = result["aggregation"], result["attention"], result["machine"]
    gpu = m.get("device") == "cuda"
    if gpu:
        where = (f"{m['gpu']} ({m['sms']} SMs, {m['gpu_memory_gib']} GiB), CUDA {m['cuda']}, torch "
                 f"{m['torch']}, Triton {m['triton']}; host {m['cpu']}, {m['cores']} cores. hgnn runs "
                 "its Triton kernels; times are CUDA-event medians after a warm-up. Device-to-device "
                 "copy bandwidth")
    else:
        where = (f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} "
                 "threads). Stream-copy bandwidth")
    lines = [f"# Kernel benchmark{' on a GPU' if gpu else ''} (measured here)", "",
             f"Machine: {where} measured in the same run: "
             f"**{result['stream_copy_gbs']:.1f} GB/s** (bytes read + written). Byte model: "
             f"{result['byte_model']}.", "",
             "## Typed sum aggregation (forward)", "",
             "| relations | edges | F | hgnn ms | PyG gather+scatter ms | torch.sparse CSR ms | "
             "speed-up vs PyG | vs CSR | hgnn GB/s (no-reuse) | % of copy bw |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["impl"] != "hgnn":
            continue
        key = {"op": "typed_sum", "edges": r["edges"], "relations": r["relations"], "feat": r["feat"]}
        pyg = _lookup(rows, impl="pyg_gather_scatter", **key)
        csr = _lookup(rows, impl="torch_sparse_csr", **key)
        lines.append(
            f"| {r['relations']} | {r['edges']:,} | {r['feat']} | {1e3 * r['time_s']:.2f} | "
            f"{1e3 * pyg['time_s']:.2f} | {1e3 * csr['time_s']:.2f} | "
            f"{pyg['time_s'] / r['time_s']:.1f}x | {csr['time_s'] / r['time_s']:.2f}x | "
            f"{r['effective_gbs']:.1f} | {100 * r['effective_gbs'] / result['stream_copy_gbs']:.0f}% |")
    lines += ["", "Effective GB/s above the copy bandwidth means the graph's source rows fit in cache: "
              "the no-reuse model counts every edge's row as a DRAM read. At 10^6+ edges the rows "
              "no longer fit and random row gathers are latency-bound, well below stream copy."]
    if gpu:
        lines += ["", "F = 256 at 5 * 10^7 edges is not run: the unfused path's E x F message tensor "
                  "alone would take 51 GB of the GPU's memory. cuSPARSE (`torch.sparse` CSR) is "
                  "a tuned SpMM for one relation; hgnn's kernel covers every relation in one launch "
                  "and also serves mean/max and per-edge weights with their backward passes."]
    else:
        lines += ["", "F = 256 at 10^7 edges is not run: the unfused path's E x F message tensor "
                  "alone would take 10 GB of this machine's 24 GB."]
    if not any(r["impl"] == "torch_scatter" for r in rows):
        lines += ["", "torch_scatter: not importable here (no wheels for this torch), not measured."]
    lines += ["", "## Fused attention (4 heads x 16)", "",
              "Forward alone, and forward plus backward (gradients of q, k and v). Peak memory: "
              + ("the allocator's peak during one call above what the inputs hold." if gpu else
                 "the process's resident-memory peak during one call, in a fresh process."), "",
              "| pass | edges | hgnn fused ms | PyG-style unfused ms | speed-up | hgnn peak MiB | "
              "unfused peak MiB | memory ratio |", "|---|---|---|---|---|---|---|---|"]
    for r in att:
        if r["impl"] != "hgnn_fused":
            continue
        backward = r.get("backward", False)
        u = _lookup(att, impl="pyg_unfused", edges=r["edges"], backward=backward) \
            if "backward" in r else _lookup(att, impl="pyg_unfused", edges=r["edges"])
        mem = (f"{r['peak_mib']:.0f} | {u['peak_mib']:.0f} | "
               f"{r['peak_mib'] / max(u['peak_mib'], 1e-9):.2f}" if "peak_mib" in r else "- | - | -")
        lines.append(f"| {'fwd + bwd' if backward else 'fwd'} | {r['edges']:,} | "
                     f"{1e3 * r['time_s']:.2f} | {1e3 * u['time_s']:.2f} | "
                     f"{u['time_s'] / r['time_s']:.1f}x | {mem} |")
    command = "python benchmarks/kernels/bench.py" + (" --device cuda" if gpu else "")
    lines += ["", f"Produced by `{command}`; plot: `{png_path.name}`."]
    md_path.write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, rel in zip(axes, (1, 8), strict=True):
        for impl, style in (("hgnn", "-o"), ("pyg_gather_scatter", "--s"),
                            ("torch_sparse_csr", ":^"), ("torch_scatter", "-.v")):
            pts = sorted((r["edges"], r["effective_gbs"]) for r in rows
                         if r["impl"] == impl and r["relations"] == rel and r["feat"] == 64)
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label=impl)
        ax.axhline(result["stream_copy_gbs"], color="gray", lw=1,
                   label="device copy" if gpu else "stream copy")
        ax.set_xscale("log")
        ax.set_xlabel("edges")
        ax.set_ylabel("effective GB/s (no-reuse bytes / time)")
        ax.set_title(f"typed sum aggregation, F = 64, {rel} relation(s)"
                     + (f", {m['gpu']}" if gpu else ""))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
