"""Plots of a plan search: the frontier as an image (matplotlib) or in the terminal."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def frontier_plot(res, path: Path) -> None:
    """Tokens/s per GPU against tokens/s per user for every feasible plan, the frontier
    highlighted, colour = accuracy, marker size = max context; the recommendation starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = res.table.cols
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    n = len(res.table)
    sub = np.random.default_rng(0).choice(n, size=min(n, 20000), replace=False) if n else np.zeros(0, int)
    ax.scatter(c["tok_s_per_user"][sub], c["tok_s_per_gpu"][sub], s=4, c="0.8", label=f"feasible plans ({n:,})", rasterized=True)
    fx = np.array([d["output_tokens_per_s_per_user"] for d in res.frontier])
    fy = np.array([d["output_tokens_per_s_per_gpu"] for d in res.frontier])
    fa = np.array([d["accuracy"] for d in res.frontier])
    fc = np.array([d["max_context_tokens"] for d in res.frontier], float)
    size = 20 + 80 * (fc / max(fc.max(), 1))
    sc = ax.scatter(fx, fy, c=fa, s=size, cmap="viridis", edgecolors="k", linewidths=0.4, label="C/A/P frontier", zorder=3)
    r = res.recommended
    ax.scatter([r["output_tokens_per_s_per_user"]], [r["output_tokens_per_s_per_gpu"]], marker="*", s=300, c="red",
               edgecolors="k", zorder=4, label="recommended")
    fig.colorbar(sc, ax=ax, label="accuracy (bf16 = 1.0)")
    ax.set_xlabel("output tokens/s per user (1 / TPOT)")
    ax.set_ylabel("output tokens/s per GPU")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(f"{res.model}: {res.plans_evaluated:,} plans; marker size = max context")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def terminal_plot(frontier: list[dict], width: int = 60, height: int = 16) -> str:
    """A character plot of the frontier: x = tokens/s per user, y = tokens/s per GPU (log axes)."""
    if not frontier:
        return ""
    x = np.log10([d["output_tokens_per_s_per_user"] for d in frontier])
    y = np.log10([d["output_tokens_per_s_per_gpu"] for d in frontier])
    x0, x1 = x.min(), max(x.max(), x.min() + 1e-9)
    y0, y1 = y.min(), max(y.max(), y.min() + 1e-9)
    grid = [[" "] * width for _ in range(height)]
    for i, (a, b) in enumerate(zip(x, y)):
        col = int((a - x0) / (x1 - x0) * (width - 1))
        r = height - 1 - int((b - y0) / (y1 - y0) * (height - 1))
        grid[r][col] = "*" if i == 0 else ("o" if grid[r][col] == " " else grid[r][col])
    lines = [f"{10 ** y1:>9,.0f} |" + "".join(grid[0])]
    lines += ["          |" + "".join(g) for g in grid[1:-1]]
    lines += [f"{10 ** y0:>9,.0f} |" + "".join(grid[-1])]
    lines += ["          +" + "-" * width, f"           {10 ** x0:<10,.1f}{'tokens/s per user (log)':^{width - 20}}{10 ** x1:>10,.1f}",
              "tokens/s per GPU (log); * = first plan by the objective, o = frontier plan"]
    return "\n".join(lines)
