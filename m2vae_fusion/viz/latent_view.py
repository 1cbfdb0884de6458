"""The latent-space image: a 2-D plane through the M2VAE's latent space, coloured by the re-encoding
statistics of the paper's Fig. 5d, with the class regions outlined and every current belief drawn as its
mean and its 2-sigma ellipse.

Everything comes from the model alone (its manifest holds no training latents):
- Samples: z ~ p(z) = N(0, I), labelled by the model's own classifier (the one the fusion node runs).
  Of the sample sets tried (the prior; prior samples decoded and re-encoded; encodings of Gaussian
  features), the prior put the most simulated full-sensor encodings into their true class's region
  (79 % of 72 in 3 seeds x 8 classes x 3 views, against 75 % and 56 %, with an earlier shipped model).
- Plane: within the span of the three leading linear discriminants (LDA) of the samples, the plane on
  which the most classes keep a region of their own (fit_plane); PCA where fewer than three classes
  occur. Lift: a plane point (u, v) stands for E[z | B^T (z - m) = (u, v)] under the samples'
  Gaussian fit, m + S B (B^T S B)^-1 (u, v).
- Class regions: the class that the samples projecting near a plane point most probably have (a
  Gaussian-kernel average of their class probabilities), i.e. the class a belief drawn there most likely
  has. The classifier of the lifted point itself would be simpler but hides the classes whose samples lie
  off the plane: 2 of the 8 with an earlier shipped model.
- Heatmap: each lifted grid point z_0 is auto re-encoded k times through the full encoder
  (z -> x' -> z, core.fusion.auto_reencode); "variance" shows sigma^2 = sum_i sigma_i^2 of q_k as in
  Fig. 5d, "drift" the distance |mu_k - z_0| of Fig. 5c.
The background is computed once (LatentBackground); LatentView keeps a figure and redraws only the beliefs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from m2vae_fusion.core.fusion import auto_reencode
from m2vae_fusion.core.gaussian import DiagonalGaussian
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.viz import HEATMAPS
from m2vae_fusion.viz.markers import RGB, UNKNOWN_RGB, object_marker

PADDING = 0.25  # of the samples' range around the plane's extent: simulated encodings all fall inside
KERNEL_WIDTH = 0.25  # of the projected samples' standard deviation: smooth regions that still show all 8 classes


@dataclass(frozen=True)
class LatentPlane:
    origin: np.ndarray  # (D,) mean of the samples
    basis: np.ndarray  # (D, 2) orthonormal
    lift_matrix: np.ndarray  # (D, 2): z = origin + lift_matrix @ (u, v)

    def project(self, z: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, 2)."""
        return (np.atleast_2d(z) - self.origin) @ self.basis

    def lift(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) -> (N, D), the conditional mean of z given its projection."""
        return self.origin + np.atleast_2d(uv) @ self.lift_matrix.T

    def project_covariance(self, log_var: np.ndarray) -> np.ndarray:
        """Diagonal posteriors (N, D) log-variances -> (N, 2, 2) covariances in the plane."""
        var = np.exp(np.atleast_2d(log_var))
        return np.einsum("di,nd,dj->nij", self.basis, var, self.basis)


def prior_samples(latent_dim: int, count: int, seed: int) -> np.ndarray:
    """z ~ p(z) = N(0, I), (count, latent_dim)."""
    return np.random.default_rng(seed).standard_normal((count, latent_dim))


def populated_classes(labels: np.ndarray) -> list:
    """The labels with at least two points: a class of one has no spread to fit."""
    return [c for c in np.unique(labels) if np.sum(labels == c) > 1]


def discriminant_directions(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Fisher's linear discriminants of labelled points (D, k), best first; k = classes - 1."""
    classes = populated_classes(labels)
    overall = z.mean(axis=0)
    dim = z.shape[1]
    within = np.zeros((dim, dim))
    between = np.zeros((dim, dim))
    for c in classes:
        members = z[labels == c]
        centred = members - members.mean(axis=0)
        within += centred.T @ centred
        offset = (members.mean(axis=0) - overall)[:, None]
        between += len(members) * offset @ offset.T
    within += 1e-6 * np.trace(within) / dim * np.eye(dim)  # keeps the Cholesky factor defined for degenerate classes
    chol = np.linalg.cholesky(within)
    inv = np.linalg.inv(chol)
    values, vectors = np.linalg.eigh(inv @ between @ inv.T)
    order = np.argsort(values)[::-1][: max(len(classes) - 1, 0)]
    return inv.T @ vectors[:, order]


def sphere_points(count: int) -> np.ndarray:
    """(count, 3) unit vectors spread evenly over the sphere (Fibonacci lattice)."""
    i = np.arange(count) + 0.5
    polar, azimuth = np.arccos(1 - 2 * i / count), np.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1)


def visible_classes_plane(y: np.ndarray, labels: np.ndarray, candidates: int = 300) -> np.ndarray:
    """(3, 2) orthonormal basis of the plane through 3-D points `y` (N, 3) on which the most classes are
    visible: the samples projecting near a class's projected mean mostly have that class (the class
    regions of LatentBackground, with labels for probabilities); ties go to the plane keeping the class
    means farthest apart. Candidates: the planes normal to `candidates` directions over the sphere (a
    plane and its flip are one, so half of them repeat; the lattice is cheap)."""
    classes = np.unique(labels)
    onehot = (labels[:, None] == classes[None]).astype(float)
    means = np.stack([y[labels == c].mean(axis=0) for c in classes])
    a, b = np.triu_indices(len(classes), k=1)
    best, best_key = np.eye(3)[:, :2], (-1, 0.0)
    for normal in sphere_points(candidates):
        in_plane = np.linalg.svd(np.eye(3) - np.outer(normal, normal))[0][:, :2]
        uv, centres = y @ in_plane, means @ in_plane
        regions = np.argmax(kernel_average(centres, uv, onehot, KERNEL_WIDTH * float(np.mean(uv.std(axis=0)))), axis=1)
        key = (int(np.sum(regions == np.arange(len(classes)))), float(np.min(np.linalg.norm(centres[a] - centres[b], axis=1))))
        if key > best_key:
            best, best_key = in_plane, key
    flat = (means - means.mean(axis=0)) @ best
    return best @ np.linalg.svd(flat, full_matrices=False)[2].T  # first axis: the class means' widest direction


def fit_plane(z: np.ndarray, labels: np.ndarray) -> LatentPlane:
    """The plane through labelled latent samples that shows their classes best: within the span of the
    three leading linear discriminants (LDA), the one on which the most classes keep a region of their
    own (visible_classes_plane). Eight classes of three binary attributes sit at the corners of a cube
    in LDA space, and the two leading discriminants alone may look at it along a diagonal, inner corners
    under their neighbours (with the shipped model 2 of 8 classes, against 1 on the chosen plane). The
    two leading discriminants for three classes, PCA for fewer."""
    directions = discriminant_directions(z, labels)
    if directions.shape[1] >= 3:
        kept = np.isin(labels, populated_classes(labels))
        y = (z[kept] - z.mean(axis=0)) @ directions[:, :3]
        directions = directions[:, :3] @ visible_classes_plane(y, labels[kept])
    elif directions.shape[1] < 2:
        centred = z - z.mean(axis=0)
        directions = np.linalg.svd(centred, full_matrices=False)[2][:2].T
    basis = np.linalg.qr(directions[:, :2])[0]
    covariance = np.cov(z, rowvar=False)
    lift_matrix = covariance @ basis @ np.linalg.inv(basis.T @ covariance @ basis)
    return LatentPlane(z.mean(axis=0), basis, lift_matrix)


def kernel_average(
    points: np.ndarray, centres: np.ndarray, values: np.ndarray, bandwidth: float, chunk: int = 1024
) -> np.ndarray:
    """Nadaraya-Watson average of `values` (N, K) at `points` (P, 2), Gaussian kernel on `centres` (N, 2).
    Weights are normalised per point in log space, so a point far from every centre takes its nearest ones'."""
    out = np.empty((len(points), values.shape[1]))
    squared = np.sum(centres**2, axis=1)
    for start in range(0, len(points), chunk):  # (chunk, N) weights at a time keeps memory at ~30 MB
        p = points[start : start + chunk]
        d2 = np.sum(p**2, axis=1)[:, None] + squared[None] - 2 * p @ centres.T
        logits = -d2 / (2 * bandwidth**2)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        out[start : start + chunk] = (weights @ values) / weights.sum(axis=1, keepdims=True)
    return out


def grid_points(extent: tuple[float, float, float, float], size: int) -> np.ndarray:
    """(size * size, 2) plane points covering `extent`, row-major from the bottom left."""
    uu, vv = np.meshgrid(np.linspace(extent[0], extent[1], size), np.linspace(extent[2], extent[3], size))
    return np.stack([uu.ravel(), vv.ravel()], axis=1)


@dataclass(frozen=True)
class LatentBackground:
    """What LatentView draws behind the beliefs, on a grid x right, y up (row 0 at the bottom)."""

    plane: LatentPlane
    extent: tuple[float, float, float, float]  # u_min, u_max, v_min, v_max
    heatmap: np.ndarray  # (G, G) the quantity per grid point
    quantity: str  # "variance" | "drift"
    steps: int
    scores: np.ndarray  # (G, G, C) p(class) of the latents that project near each grid point
    class_names: tuple[str, ...]

    @property
    def classes(self) -> np.ndarray:
        """(G, G) class region index of each grid point."""
        return np.argmax(self.scores, axis=2)


@torch.no_grad()
def compute_background(
    model: PerceptionModel, quantity: str = "variance", steps: int = 10, grid: int = 96, samples: int = 4000, seed: int = 0
) -> LatentBackground:
    """Plane, class regions and the re-encoding heatmap of `model` (0.6-0.9 s on one core at the defaults)."""
    if quantity not in HEATMAPS:
        raise ValueError(f"heatmap quantity must be one of {list(HEATMAPS)}, got {quantity!r}")
    if steps < 1 or grid < 2 or samples < 10:
        raise ValueError(f"need steps >= 1, grid >= 2 and samples >= 10, got {steps}, {grid}, {samples}")
    z = prior_samples(model.fusion.latent_dim, samples, seed)
    probabilities = model.class_probabilities(z)
    plane = fit_plane(z, np.argmax(probabilities, axis=1))
    uv = plane.project(z)
    lo, hi = np.percentile(uv, 1, axis=0), np.percentile(uv, 99, axis=0)
    centre, half = (lo + hi) / 2, (1 + PADDING) * float(np.max(hi - lo)) / 2  # square, so ellipses keep their shape
    extent = (centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half)

    points = grid_points(extent, grid)
    scores = kernel_average(points, uv, probabilities, KERNEL_WIDTH * float(np.mean(uv.std(axis=0)))).reshape(grid, grid, -1)
    z0 = torch.from_numpy(plane.lift(points).astype(np.float32))
    final = auto_reencode(model.fusion, DiagonalGaussian(z0, torch.zeros_like(z0)), model.fusion.modality_names, steps)[-1]
    if quantity == "variance":
        values = torch.exp(final.log_var).sum(dim=1)
    else:
        values = torch.linalg.vector_norm(final.mean - z0, dim=1)
    return LatentBackground(
        plane, extent, values.numpy().reshape(grid, grid).astype(np.float64), quantity, steps, scores, model.labels.classes
    )


@dataclass(frozen=True)
class BeliefPoint:
    """A belief as the latent view draws it."""

    label: str
    mean: np.ndarray  # (D,)
    log_var: np.ndarray  # (D,)
    rgb: tuple[float, float, float]
    shape: str  # "cylinder" (circle) | "cube" (square)
    alpha: float


def belief_points(beliefs: Iterable[Any], model_id: str, latent_dim: int) -> tuple[list[BeliefPoint], list[str]]:
    """ObjectBeliefs (messages or bag dataclasses) -> the points to draw, and the ids of those left out
    because another model made their latent (its plane means nothing for them) or it is malformed."""
    points, left_out = [], []
    for belief in beliefs:
        mean, log_var = np.asarray(belief.mean, np.float64), np.asarray(belief.log_var, np.float64)
        wellformed = mean.shape == log_var.shape == (latent_dim,) and np.all(np.isfinite(mean)) and np.all(np.isfinite(log_var))
        if belief.model_id != model_id or not wellformed:
            left_out.append(belief.object_id)
            continue
        look = object_marker(belief, 0)
        points.append(BeliefPoint(belief.object_id, mean, log_var, look.rgb, look.shape, look.alpha))
    return points, left_out


def short_name(class_name: str) -> str:
    """red_cylinder_matte -> "red cyl.\\nmatte": fits inside a class region."""
    parts = class_name.split("_")
    if len(parts) != 3:
        return class_name
    return f"{parts[0]} {parts[1][:3]}.\n{parts[2]}"


def _outside(u: float, v: float, extent: tuple[float, float, float, float]) -> str | None:
    """The matplotlib triangle marker pointing from the extent towards (u, v), None if (u, v) is inside."""
    over = {">": u - extent[1], "<": extent[0] - u, "^": v - extent[3], "v": extent[2] - v}
    direction = max(over, key=over.get)
    return direction if over[direction] > 0 else None


class LatentView:
    """A matplotlib figure of `background` (drawn once); `render` adds the beliefs and returns RGB pixels."""

    def __init__(self, background: LatentBackground, size: int = 480, dpi: int = 100) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.colors import LogNorm, Normalize
        from matplotlib.figure import Figure

        self.background = background
        self.figure = Figure(figsize=(size / dpi, size / dpi), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.figure)
        ax = self.figure.add_axes((0.1, 0.08, 0.7, 0.7))  # square in pixels: the plane keeps its aspect
        self.axes = ax
        extent = background.extent
        values = background.heatmap
        positive = values[values > 0]
        # A log scale only where the values span a decade or more; its tick labels are wide.
        wide = positive.size > 0 and positive.max() >= 10 * positive.min()
        norm = LogNorm(positive.min(), positive.max()) if wide else Normalize(values.min(), values.max())
        image = ax.imshow(values, origin="lower", extent=extent, cmap="Purples", norm=norm, interpolation="bilinear")
        self._outline_regions(ax)
        colourbar = self.figure.colorbar(image, cax=self.figure.add_axes((0.82, 0.08, 0.03, 0.7)))
        label = r"$\sum_i\sigma_i^2$" if background.quantity == "variance" else r"$|\mu_k - z_0|$"
        colourbar.set_label(f"{label} after {background.steps} re-encodings", fontsize=8, labelpad=2)
        colourbar.ax.tick_params(labelsize=7)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_xlabel("LDA 1", fontsize=8, labelpad=1)
        ax.set_ylabel("LDA 2", fontsize=8, labelpad=1)
        ax.tick_params(labelsize=7)
        self.title = self.figure.text(0.5, 0.95, "", ha="center", va="center", fontsize=10)
        self.figure.text(
            0.5,
            0.86,
            "beliefs: mean (o cylinder, \u25a1 cube; \u25b6 off the plot) and 2\u03c3 ellipse, opacity = confidence\n"
            "lines: class regions of the latents that project there",
            ha="center",
            va="center",
            fontsize=7.5,
            color="0.3",
        )
        self._artists: list = []

    def _outline_regions(self, ax) -> None:
        """Class boundaries as lines and each region's class name at its centre."""
        classes = self.background.classes
        size = classes.shape[0]
        u = np.linspace(self.background.extent[0], self.background.extent[1], size)
        v = np.linspace(self.background.extent[2], self.background.extent[3], size)
        scores = self.background.scores
        for index in np.unique(classes):
            # The zero level of a class's margin over the best other class: a smooth boundary.
            margin = scores[:, :, index] - np.delete(scores, index, axis=2).max(axis=2)
            ax.contour(u, v, margin, levels=[0.0], colors="k", linewidths=0.8, alpha=0.7)
            rows, cols = np.nonzero(classes == index)
            if len(rows) < 0.01 * classes.size:
                continue  # a sliver: no room for a name
            # The member cell nearest the region's centroid, so that a curved region still gets its name inside.
            nearest = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)
            name = self.background.class_names[index]
            ax.text(
                u[cols[nearest]],
                v[rows[nearest]],
                short_name(name),
                ha="center",
                va="center",
                fontsize=7,
                color=RGB.get(name.split("_")[0], UNKNOWN_RGB),
                alpha=0.9,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.6},
            )

    def render(self, points: Sequence[BeliefPoint], title: str = "") -> np.ndarray:
        """The figure with `points` as (size, size, 3) uint8 RGB."""
        from matplotlib.patches import Ellipse

        for artist in self._artists:
            artist.remove()
        self._artists = []
        ax = self.axes
        plane = self.background.plane
        extent = self.background.extent
        if points:
            centres = plane.project(np.stack([p.mean for p in points]))
            covariances = plane.project_covariance(np.stack([p.log_var for p in points]))
            for point, (u, v), cov in zip(points, centres, covariances):
                outside = _outside(u, v, extent)
                if outside:
                    # Off the plane's extent: a triangle on the border pointing where the mean is.
                    margin = 0.02 * (extent[1] - extent[0])
                    u = float(np.clip(u, extent[0] + margin, extent[1] - margin))
                    v = float(np.clip(v, extent[2] + margin, extent[3] - margin))
                    marker = outside
                else:
                    values, vectors = np.linalg.eigh(cov)
                    width, height = 4 * np.sqrt(np.maximum(values[::-1], 0))  # 2 sigma each side
                    angle = float(np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1])))
                    ellipse = Ellipse(
                        (u, v),
                        width,
                        height,
                        angle=angle,
                        facecolor=(*point.rgb, 0.25 * point.alpha),
                        edgecolor=point.rgb,
                        linewidth=1.2,
                    )
                    ax.add_patch(ellipse)
                    self._artists.append(ellipse)
                    marker = "s" if point.shape == "cube" else "o"
                dot = ax.scatter(
                    [u], [v], s=60, marker=marker, c=[point.rgb], alpha=point.alpha, edgecolors="k", linewidths=1.0, zorder=3
                )
                # Labels point inwards so that they stay inside the plot near its right and top edges.
                right = u > extent[0] + 0.7 * (extent[1] - extent[0])
                top = v > extent[2] + 0.85 * (extent[3] - extent[2])
                text = ax.annotate(
                    point.label,
                    (u, v),
                    xytext=(-6 if right else 6, -6 if top else 6),
                    textcoords="offset points",
                    ha="right" if right else "left",
                    va="top" if top else "bottom",
                    fontsize=8,
                    fontweight="bold",
                    zorder=4,
                    annotation_clip=True,
                    clip_on=True,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": point.rgb, "alpha": 0.85},
                )
                self._artists += [dot, text]
        self.title.set_text(title)
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[:, :, :3].copy()
