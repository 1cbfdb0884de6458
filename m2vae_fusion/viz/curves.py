"""Training curves from the metrics.jsonl files that core.training writes (one JSON record per logged
epoch): one row per run, one column per kind of term (loss; reconstruction rec/*; KL kl/* and
mutual_kl/*; re-encoding reenc/* with its weight alpha)."""

from __future__ import annotations

import json
from pathlib import Path

from m2vae_fusion.core.errors import DataError
from m2vae_fusion.core.training import METRICS_NAME

# column title -> key prefixes; a key belongs to the first column whose prefix it has
COLUMNS: dict[str, tuple[str, ...]] = {
    "loss": ("loss",),
    "reconstruction (rec/*)": ("rec/",),
    "KL to the prior (kl/*), between subsets (mutual_kl/*, dashed)": ("kl/", "mutual_kl/"),
    "re-encoding (reenc/*), its weight alpha (dotted)": ("reenc/", "alpha"),
}
NOT_PLOTTED = ("epoch", "time")


def find_metrics(run_dir: Path) -> list[Path]:
    """Every metrics.jsonl under `run_dir` (itself included), in path order."""
    if not run_dir.is_dir():
        raise DataError(f"run folder {run_dir} does not exist (give the --out of `m2vae train` or `m2vae reproduce`)")
    paths = sorted(run_dir.rglob(METRICS_NAME))
    if not paths:
        raise DataError(f"no {METRICS_NAME} under {run_dir}: not a training run folder")
    return paths


def read_metrics(path: Path) -> list[dict[str, float]]:
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number} is not a JSON record: {exc}") from None
        if not isinstance(record, dict) or "epoch" not in record:
            raise DataError(f"{path}:{number} has no 'epoch': {line[:80]}")
        records.append(record)
    return records


def column_of(key: str) -> str | None:
    return next((title for title, prefixes in COLUMNS.items() if key.startswith(prefixes)), None)


def draw_training(run_dir: Path, out: Path) -> list[Path]:
    """Write the curves of every run under `run_dir` to `out` (PNG); returns the metrics files drawn."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    paths = find_metrics(run_dir)
    runs = [(path, read_metrics(path)) for path in paths]
    keys = {key for _, records in runs for record in records for key in record}
    columns = [title for title in COLUMNS if any(column_of(key) == title for key in keys)]
    figure = Figure(figsize=(4.2 * len(columns), 2.6 * len(runs) + 0.6), dpi=90, layout="constrained")
    axes = figure.subplots(len(runs), len(columns), squeeze=False)
    for row, (path, records) in enumerate(runs):
        name = str(path.parent.relative_to(run_dir)) if path.parent != run_dir else run_dir.name
        epochs = [record["epoch"] for record in records]
        for col, title in enumerate(columns):
            ax = axes[row, col]
            for key in sorted(k for k in {k for r in records for k in r} if column_of(k) == title):
                values = [record.get(key, float("nan")) for record in records]
                style = "--" if key.startswith("mutual_kl/") else ":" if key == "alpha" else "-"
                label = key if title == "loss" else key.split("/", 1)[-1] + (" (mutual)" if key.startswith("mutual_kl/") else "")
                ax.plot(epochs, values, style, linewidth=1, label=label)
            if ax.lines:
                ax.legend(fontsize=6, ncol=2 if len(ax.lines) > 6 else 1)
            else:
                ax.text(
                    0.5, 0.5, "not logged by this run", transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.5"
                )
                ax.set_xticks([])
                ax.set_yticks([])
            ax.set_title(f"{name}: {title}" if col == 0 else title, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if row == len(runs) - 1:
                ax.set_xlabel("epoch", fontsize=8)
    figure.suptitle(f"training curves under {run_dir}", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    return paths
