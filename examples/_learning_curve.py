"""The learning curve of the ML examples: the global model's validation error per round, as a PNG.

matplotlib is imported here only when a curve is drawn (it is in the examples' requirements,
not in the SDK's), with the Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence


def plot(
    path: Path,
    errors: Sequence[float],
    *,
    title: str,
    ylabel: str,
    baseline: Optional[tuple[float, str]] = None,
) -> Path:
    """Write ``errors`` (index 0: the starting model, then one per round) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100, layout="constrained")
    rounds = list(range(len(errors)))
    ax.plot(rounds, errors, marker="o", color="#1f6fb4", label="global model")
    for x, y in zip(rounds, errors):
        ax.annotate(
            f"{y:.3g}",
            (x, y),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
            color="#444444",
        )
    if baseline is not None:
        ax.axhline(baseline[0], color="#b0413e", linestyle="--", linewidth=1, label=baseline[1])
    ax.set_xticks(rounds, ["start", *map(str, rounds[1:])])
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
