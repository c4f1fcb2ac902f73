"""The report as a picture: every model's score per task and on average,
each trial a dot and the median a bar, the paper's numbers beside them.

Example:

```python
report = build_report(bam_dir, ["single=a+b", "multi"])
draw_scores(report, "scores.png",
            paper={"single": {"rte": 70.4}, "multi": {"rte": 82.1}})
```
"""

import numpy as np

from bam_tf.errors import BamError
from bam_tf.io_utils import atomic_open


class FigureError(BamError):
    pass


def paper_average(scores, tasks):
    """The mean of the paper's scores over `tasks`, or None when it does
    not give them all (the paper's own average is over its 8 tasks, not
    these)."""
    if all(t in scores for t in tasks):
        return float(np.mean([scores[t] for t in tasks]))
    return None


def check_paper_scores(paper, report, source):
    """`paper` maps report labels to {task or "avg": score} (keys that
    start with "_" are comments, such as where the numbers come from).
    Returns it without the comments; errors name `source` (the file it came
    from) and what was expected."""
    if not isinstance(paper, dict):
        raise FigureError(f"{source}: expected a JSON object mapping model "
                          f"labels to {{task: score}}, got "
                          f"{type(paper).__name__}.")
    columns = set(report["tasks"]) | {"avg"}
    paper = {k: v for k, v in paper.items() if not k.startswith("_")}
    for label, scores in paper.items():
        if label not in report["models"]:
            raise FigureError(
                f"{source}: {label!r} is not a model of the report "
                f"(its models: {sorted(report['models'])}).")
        if not isinstance(scores, dict) or not all(
                k in columns and isinstance(v, (int, float))
                and not isinstance(v, bool) for k, v in scores.items()):
            raise FigureError(
                f"{source}: {label!r} must map tasks of the report "
                f"({sorted(columns)}) to numbers, got {scores!r}.")
    return paper


def draw_scores(report, path, paper=None, title=None):
    """Writes the figure of `report` (`build_report`'s dict) to `path`
    (PNG; rebuilt byte for byte from the same report).

    Args:
        report: the report; its `split` names the axis.
        path: where to write the PNG.
        paper: optional {model label: {task or "avg": score}}, the paper's
            numbers for the report's rows. Without an "avg" of its own, a
            row's paper average is the mean over the report's tasks where
            the paper gives them all.
        title: the figure's title.
    """
    import matplotlib
    matplotlib.use("Agg")  # files only, never a window
    from matplotlib import pyplot as plt

    paper = paper or {}
    labels = list(report["models"])
    columns = list(report["tasks"]) + ["avg"]
    colors = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(1, len(columns), figsize=(
        2.2 * len(columns) + 1.5, 3.6), squeeze=False)
    for ax, column in zip(axes[0], columns):
        for x, label in enumerate(labels):
            model = report["models"][label]
            scores = model["scores"].get(column, [])
            color = colors[x % len(colors)]
            # Fixed offsets, no random jitter: the same report, the same
            # bytes.
            offsets = (np.linspace(-0.12, 0.12, len(scores))
                       if len(scores) > 1 else np.zeros(len(scores)))
            ax.scatter(x + offsets, scores, s=14, color=color, alpha=0.8,
                       zorder=3)
            if scores:
                ax.hlines(model["median"][column], x - 0.25, x + 0.25,
                          color=color, linewidth=2.2, zorder=4)
            given = paper.get(label, {})
            value = given.get(column) if column != "avg" else given.get(
                "avg", paper_average(given, report["tasks"]))
            if value is not None:
                ax.scatter([x + 0.38], [value], marker="D", s=22,
                           facecolors="none", edgecolors=color, zorder=3)
        ax.set_title(column)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="y", labelsize=7)
    axes[0][0].set_ylabel(f"{report['split']} score")
    handles = [plt.Line2D([], [], marker="o", linestyle="", color="gray",
                          markersize=4, label="trial"),
               plt.Line2D([], [], color="gray", linewidth=2.2,
                          label="median")]
    if paper:
        handles.append(plt.Line2D([], [], marker="D", linestyle="",
                                  markerfacecolor="none", color="gray",
                                  markersize=5, label="paper"))
    fig.legend(handles=handles, loc="upper right", fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    try:
        with atomic_open(path, "wb") as f:
            # No "Software" entry: the bytes depend on the figure alone.
            fig.savefig(f, format="png", dpi=120,
                        metadata={"Software": None})
    finally:
        plt.close(fig)
