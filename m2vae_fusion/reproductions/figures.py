"""Matplotlib figures of the reproductions: Fig. 4 (embeddings), Fig. 5 (re-encoding drift) and the
in-place fusion curve (accuracy and drift against the number of in-place fusions)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from m2vae_fusion.core.fusion import auto_reencode  # noqa: E402
from m2vae_fusion.core.gaussian import kl_to_standard_normal  # noqa: E402
from m2vae_fusion.core.metrics import drift_field, elbo_test, shared_classifier  # noqa: E402

SUBSETS = (("a&b", ["a", "b"]), ("a", ["a"]), ("b", ["b"]))


@torch.no_grad()
def figure_4(model, train, train_labels, test, test_labels, path: Path) -> None:
    """Rows: class, ELBO (Eq. 20), KL to the prior, naive Bayes decision regions; columns: a&b, a, b."""
    means = {label: model.encode({n: test[n] for n in names}).mean.numpy() for label, names in SUBSETS}
    classifier = shared_classifier(model, train, train_labels)
    everything = np.concatenate(list(means.values()))
    lo, hi = everything.min(0) - 0.5, everything.max(0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    regions = classifier.predict(np.stack([gx.ravel(), gy.ravel()], 1)).reshape(gx.shape)

    fig, axes = plt.subplots(4, 3, figsize=(12, 15), sharex=True, sharey=True)
    for col, (label, names) in enumerate(SUBSETS):
        z = means[label]
        elbo = elbo_test(model, test, names).numpy()
        kl = kl_to_standard_normal(model.encode({n: test[n] for n in names})).numpy()
        panels = (
            ("class", test_labels, "tab10"),
            ("ELBO (Eq. 20)", elbo, "viridis"),
            ("KL(q || p(z))", kl, "magma"),
        )
        for row, (title, colour, cmap) in enumerate(panels):
            ax = axes[row, col]
            sc = ax.scatter(z[:, 0], z[:, 1], c=colour, cmap=cmap, s=3)
            ax.set_title(f"{label}: {title}")
            fig.colorbar(sc, ax=ax)
        ax = axes[3, col]
        ax.contourf(gx, gy, regions, levels=np.arange(11) - 0.5, cmap="tab10", alpha=0.35)
        ax.scatter(z[:, 0], z[:, 1], c=test_labels, cmap="tab10", s=3)
        ax.set_title(f"{label}: naive Bayes regions")
    fig.suptitle("Fig. 4 - M2VAE embeddings of the MoG test set")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


@torch.no_grad()
def figure_5(models: dict[str, object], test, steps: int, path: Path, n_trajectories: int = 40) -> None:
    """Per model (with / without re-encoding loss): drift heatmap ||z - z_k|| over a latent grid
    with the test embeddings, and trajectories of `steps` re-encodings of the bimodal encoder."""
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 5 * len(models)), squeeze=False)
    for row, (title, model) in enumerate(models.items()):
        z0 = model.encode(test).mean
        lo, hi = z0.min(0).values.numpy() - 1.0, z0.max(0).values.numpy() + 1.0
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 60), np.linspace(lo[1], hi[1], 60))
        grid = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
        field = drift_field(model, ["a", "b"], grid, steps).reshape(gx.shape)
        ax = axes[row, 0]
        mesh = ax.pcolormesh(gx, gy, field, cmap="coolwarm", shading="auto")
        ax.scatter(z0[:, 0], z0[:, 1], s=1, c="k", alpha=0.3)
        fig.colorbar(mesh, ax=ax, label=f"||z - z_{steps}||")
        ax.set_title(f"{title}:\ndrift after {steps} re-encodings", fontsize=10)
        ax = axes[row, 1]
        start = model.encode({n: x[:n_trajectories] for n, x in test.items()})
        path_z = torch.stack([q.mean for q in auto_reencode(model, start, ["a", "b"], steps)]).numpy()
        ax.scatter(z0[:, 0], z0[:, 1], s=1, c="lightgray")
        for i in range(path_z.shape[1]):
            ax.plot(path_z[:, i, 0], path_z[:, i, 1], "k-", lw=0.7)
            ax.plot(path_z[0, i, 0], path_z[0, i, 1], "go", ms=3)
            ax.plot(path_z[-1, i, 0], path_z[-1, i, 1], "rx", ms=4)
        ax.set_title(f"{title}:\ntrajectories (green start, red end)", fontsize=10)
    fig.suptitle("Fig. 5 - re-encoding drift of the bimodal encoder")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def inplace_curve(curves: dict[str, list[dict[str, float]]], title: str, path: Path) -> None:
    """Accuracy and drift from the joint posterior mean against in-place fusion steps (log scale),
    one line per model variant; `curves` as metrics.inplace_fusion_curve points in dict form."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for label, points in curves.items():
        steps = [p["steps"] for p in points]
        left.plot(steps, [p["accuracy"] for p in points], marker="o", label=label)
        right.plot(steps, [p["drift"] for p in points], marker="o", label=label)
    for ax, what in ((left, "accuracy"), (right, "drift ||z_k - z_joint||")):
        ax.set_xscale("log")
        ax.set_xlabel("in-place fusion steps k")
        ax.set_ylabel(what)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
