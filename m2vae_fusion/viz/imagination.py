"""What the model imagines of each object, as one RGB picture: a row per object with the camera crop, the
LiDAR profile and the IR readings that the perception model decodes from the object's latent mean
(PerceptionModel.imagine: fusion decoder -> the sensor's beta-VAE decoder).

A sensor that has already sensed the object is drawn as "held" (green frame): decoded from the belief,
it shows what the belief holds of that sensing. A sensor not sensed yet is drawn as "imagined" (orange
frame): what the model expects that sensor to report. Where a real camera crop of the object is given
(`m2vae plot imagination` cuts it from a bag), it is drawn beside the imagined one (grey frame).

Panels, each `panel` pixels square:
- camera: the crop (crop_pixels square, CHW in [0, 1]) enlarged with nearest-neighbour resampling;
- lidar: the (2, lidar_samples) profile across the line of sight (perception.features.lidar_sector):
  depth relative to the object's centre (blue; the robot is below the plot, no return at the top) and
  intensity (orange), both on [0, 1] from the bottom;
- ir: for the facing beam and its two neighbours, sqrt(reading) (red) and range / range_max (blue) as bars.
No rclpy import: the viz node turns the picture into a sensor_msgs/Image.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from m2vae_fusion.core.errors import DataError
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.perception import frames as tf
from m2vae_fusion.perception.config import PerceptionConfig
from m2vae_fusion.perception.features import observe

if TYPE_CHECKING:  # the bag reader (rosbags) is for the offline plot only: the viz node must not load it
    from m2vae_fusion.data.bag_frames import BagFrames

SENSORS = ("camera", "lidar", "ir")  # the columns, in this order; "real" goes before "camera" when shown
HELD_RGB = (40, 150, 60)  # frame of a sensed modality: decoded from the belief, what it holds
IMAGINED_RGB = (235, 130, 20)  # frame of a modality not sensed yet: what the model imagines
REAL_RGB = (130, 130, 130)  # frame of a real camera crop
BACKGROUND_RGB = (255, 255, 255)
TEXT_RGB = (30, 30, 30)
DEPTH_RGB, INTENSITY_RGB = (30, 90, 200), (235, 130, 20)
REFLECTANCE_RGB, RANGE_RGB = (200, 40, 40), (70, 110, 190)
FONT = cv2.FONT_HERSHEY_SIMPLEX
LABEL_WIDTH = 190  # px: object id, class, confidence and sensed sensors left of the panels
CAPTION = 16  # px of caption above each panel
FRAME = 3  # px of coloured frame around each panel
GAP = 10  # px between panels and between rows
HEADER = 46  # px: title and legend
REAL_CROP_GATE = 0.1  # m: a detection this near a belief's position is that object (the fusion node's gate)
LEGEND = 26  # px at the top of the LiDAR and IR panels for their legend


@dataclass(frozen=True)
class ImaginedObject:
    """One object to draw: its belief's latent mean and what it has sensed; optionally a real camera crop."""

    object_id: str
    mean: np.ndarray  # (D_z,)
    sensed: tuple[str, ...]
    label: str  # the most probable class
    confidence: float | None = None  # of `label`
    real_crop: np.ndarray | None = None  # (H, W, 3) floats in [0, 1], as perception.features.camera_crop cuts it


@dataclass(frozen=True)
class Layout:
    """Where everything goes: rows of panels under a header, the label column on the left."""

    panel: int
    columns: tuple[str, ...]  # ("real",)? + SENSORS

    @property
    def cell(self) -> int:
        return self.panel + 2 * FRAME + GAP

    @property
    def width(self) -> int:
        return LABEL_WIDTH + len(self.columns) * self.cell

    def height(self, rows: int) -> int:
        return HEADER + max(rows, 1) * (CAPTION + self.cell)

    def box(self, row: int, column: str) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) of a panel's pixels, inside its frame."""
        y0 = HEADER + row * (CAPTION + self.cell) + CAPTION + FRAME
        x0 = LABEL_WIDTH + self.columns.index(column) * self.cell + FRAME
        return y0, y0 + self.panel, x0, x0 + self.panel


def imagination_objects(beliefs: Iterable[Any], model_id: str, latent_dim: int) -> tuple[list[ImaginedObject], list[str]]:
    """ObjectBeliefs (messages or bag dataclasses) -> the objects to draw, and the ids of those left out
    because another model made their latent (this model's decoders mean nothing for it) or it is malformed."""
    objects, left_out = [], []
    for belief in beliefs:
        mean = np.asarray(belief.mean, np.float64)
        if belief.model_id != model_id or mean.shape != (latent_dim,) or not np.all(np.isfinite(mean)):
            left_out.append(belief.object_id)
            continue
        p = np.asarray(belief.class_probabilities, np.float64)
        known = p.ndim == 1 and len(p) == len(belief.class_names) > 0 and np.all(np.isfinite(p))
        best = int(np.argmax(p)) if known else -1
        objects.append(
            ImaginedObject(
                belief.object_id,
                mean,
                tuple(belief.modalities),
                str(belief.class_names[best]) if known else "?",
                float(p[best]) if known else None,
            )
        )
    return objects, left_out


def imagine_views(model: PerceptionModel, means: np.ndarray) -> dict[str, np.ndarray]:
    """Each sensor's imagined view of latents (N, D_z): camera (N, P, P, 3) HWC, lidar (N, 2, S), ir (N, 6)."""
    means = np.atleast_2d(means)
    pixels = model.config.perception.features.crop_pixels
    camera = model.imagine(means, "camera").reshape(len(means), 3, pixels, pixels).transpose(0, 2, 3, 1)
    return {"camera": camera, "lidar": model.imagine(means, "lidar").reshape(len(means), 2, -1), "ir": model.imagine(means, "ir")}


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] (clipped) -> uint8."""
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def camera_panel(crop: np.ndarray, panel: int) -> np.ndarray:
    """An (H, W, 3) crop in [0, 1] enlarged to (panel, panel, 3) uint8; nearest neighbour keeps its pixels visible."""
    return cv2.resize(to_uint8(crop), (panel, panel), interpolation=cv2.INTER_NEAREST)


def _blank(panel: int) -> np.ndarray:
    return np.full((panel, panel, 3), BACKGROUND_RGB, np.uint8)


def _text(image: np.ndarray, text: str, x: int, y: int, rgb: tuple[int, int, int] = TEXT_RGB, scale: float = 0.4) -> None:
    cv2.putText(image, text, (x, y), FONT, scale, rgb, 1, cv2.LINE_AA)


def _curve(values: np.ndarray, panel: int, top: int) -> np.ndarray:
    """Values on [0, 1] (clipped) across the panel -> (S, 1, 2) int32 points, 0 at the bottom, 1 at row `top`."""
    x = np.linspace(0, panel - 1, len(values))
    y = top + (1.0 - np.clip(values, 0.0, 1.0)) * (panel - 1 - top)
    return np.round(np.stack([x, y], axis=1)).astype(np.int32)[:, None]


def lidar_panel(profile: np.ndarray, panel: int) -> np.ndarray:
    """The (2, S) profile as a plot: depth and intensity across the line of sight, lateral offset left to right."""
    image = _blank(panel)
    top = LEGEND  # the legend stays clear of the curves
    for level in (0.0, 0.5, 1.0):  # a light grid, so that values can be read
        y = round(top + (1 - level) * (panel - 1 - top))
        cv2.line(image, (0, y), (panel - 1, y), (225, 225, 225), 1)
    cv2.line(image, (panel // 2, top), (panel // 2, panel - 1), (200, 200, 200), 1)  # the line of sight
    cv2.polylines(image, [_curve(profile[1], panel, top)], False, INTENSITY_RGB, 2, cv2.LINE_AA)
    cv2.polylines(image, [_curve(profile[0], panel, top)], False, DEPTH_RGB, 2, cv2.LINE_AA)
    _text(image, "depth", 3, 11, DEPTH_RGB, 0.35)
    _text(image, "intensity", 3, 22, INTENSITY_RGB, 0.35)
    return image


def ir_panel(values: np.ndarray, panel: int) -> np.ndarray:
    """The 6 IR numbers as bars: per beam (left neighbour, facing, right neighbour) sqrt(reading) and range."""
    image = _blank(panel)
    base, top = panel - 14, LEGEND  # room for the beam names below and the legend above
    group = panel // 3
    bar = max(group // 4, 2)
    for beam, name in enumerate(("-1", "0", "+1")):
        left = beam * group + (group - 2 * bar - 2) // 2
        for k, rgb in enumerate((REFLECTANCE_RGB, RANGE_RGB)):
            height = round(float(np.clip(values[2 * beam + k], 0.0, 1.0)) * (base - top))
            x0 = left + k * (bar + 2)
            cv2.rectangle(image, (x0, base - height), (x0 + bar - 1, base), rgb, -1)
        _text(image, name, beam * group + group // 2 - 6, panel - 3, TEXT_RGB, 0.35)
    cv2.line(image, (0, base), (panel - 1, base), (160, 160, 160), 1)
    _text(image, "sqrt(reading)", 3, 11, REFLECTANCE_RGB, 0.35)
    _text(image, "range/max", 3, 22, RANGE_RGB, 0.35)
    return image


def _header(canvas: np.ndarray, title: str, not_shown: int) -> None:
    """Title, and a legend of the frame colours."""
    _text(canvas, title + (f"  (+{not_shown} more not shown)" if not_shown else ""), 8, 16, TEXT_RGB, 0.5)
    x = 8
    for rgb, words in (
        (HELD_RGB, "held: sensed, decoded from the belief"),
        (IMAGINED_RGB, "imagined: not sensed yet"),
        (REAL_RGB, "real: camera crop"),
    ):
        cv2.rectangle(canvas, (x, 28), (x + 12, 40), rgb, -1)
        _text(canvas, words, x + 17, 38)
        x += 17 + cv2.getTextSize(words, FONT, 0.4, 1)[0][0] + 16


def _label(canvas: np.ndarray, obj: ImaginedObject, y: int) -> None:
    """The object's id, class, confidence and sensed sensors, left of its panels."""
    _text(canvas, obj.object_id, 8, y + 14, TEXT_RGB, 0.5)
    confidence = f" {obj.confidence:.0%}" if obj.confidence is not None else ""
    _text(canvas, f"{obj.label}{confidence}", 8, y + 34)
    _text(canvas, "sensed: " + ("+".join(obj.sensed) or "nothing"), 8, y + 52)


def _put(canvas: np.ndarray, layout: Layout, row: int, column: str, image: np.ndarray, rgb: tuple, caption: str) -> None:
    """A panel with its coloured frame and its caption above."""
    y0, y1, x0, x1 = layout.box(row, column)
    canvas[y0 - FRAME : y1 + FRAME, x0 - FRAME : x1 + FRAME] = rgb
    canvas[y0:y1, x0:x1] = image
    if cv2.getTextSize(caption, FONT, 0.4, 1)[0][0] > layout.cell - GAP:  # "camera: imagined" overruns a small panel
        caption = caption.split(": ")[-1]
    _text(canvas, caption, x0 - FRAME, y0 - FRAME - 6, rgb)  # clear of the frame, descenders too


def draw_imagination(
    model: PerceptionModel, objects: Sequence[ImaginedObject], max_objects: int = 8, panel: int = 128, title: str = ""
) -> np.ndarray:
    """(H, W, 3) uint8 RGB: a row per object (the first `max_objects`) with its imagined views."""
    if max_objects < 1 or panel < 32:
        raise ValueError(f"need max_objects >= 1 and panel >= 32, got {max_objects} and {panel}")
    shown = list(objects)[:max_objects]
    real = any(o.real_crop is not None for o in shown)
    layout = Layout(panel, (("real",) if real else ()) + SENSORS)
    canvas = np.full((layout.height(len(shown)), layout.width, 3), BACKGROUND_RGB, np.uint8)
    _header(canvas, title or f"model {model.model_id}: what it imagines", len(objects) - len(shown))
    if not shown:
        _text(canvas, "no beliefs yet", 8, HEADER + 24, TEXT_RGB, 0.5)
        return canvas
    views = imagine_views(model, np.stack([o.mean for o in shown]))
    drawers = {"camera": camera_panel, "lidar": lidar_panel, "ir": ir_panel}
    for row, obj in enumerate(shown):
        _label(canvas, obj, HEADER + row * (CAPTION + layout.cell))
        if real:
            crop = camera_panel(obj.real_crop, panel) if obj.real_crop is not None else _blank(panel)
            _put(canvas, layout, row, "real", crop, REAL_RGB, "camera: real" if obj.real_crop is not None else "no real crop")
        for sensor in SENSORS:
            held = sensor in obj.sensed
            image = drawers[sensor](views[sensor][row], panel)
            _put(
                canvas,
                layout,
                row,
                sensor,
                image,
                HELD_RGB if held else IMAGINED_RGB,
                f"{sensor}: {'held' if held else 'imagined'}",
            )
    return canvas


def real_crops(
    bag: BagFrames, positions: Mapping[str, Sequence[float]], config: PerceptionConfig, gate: float = REAL_CROP_GATE
) -> dict[str, np.ndarray]:
    """The newest real camera crop of each object (id -> (P, P, 3) in [0, 1]): every frame's objects cut
    by perception.features.observe as training cuts them, placed in the map, and matched to the nearest
    of `positions` (map frame) within `gate`. Frames without an image or a map pose are skipped."""
    try:
        mounts = [tf.lookup(bag.static, "base_link", f) for f in ("lidar_link", "ir_link", "camera_optical_frame")]
    except KeyError as exc:
        raise DataError(f"/tf_static: {exc.args[0]}; the sensors' mounting transforms are needed") from None
    ids = list(positions)
    where = np.asarray([positions[i][:2] for i in ids], np.float64).reshape(-1, 2)
    found: dict[str, np.ndarray] = {}
    for frame in reversed(bag.frames):  # newest first: stop once every object has its crop
        if len(found) == len(ids):
            break
        if frame.image is None or frame.base_in_map is None:
            continue
        for seen in observe(frame.image, frame.scan, frame.ir, *mounts, config):
            if seen.camera is None:
                continue
            distance = np.linalg.norm(where - tf.apply(frame.base_in_map, seen.position)[:2], axis=1)
            nearest = int(np.argmin(distance))
            if distance[nearest] <= gate and ids[nearest] not in found:
                found[ids[nearest]] = seen.camera
    return found
