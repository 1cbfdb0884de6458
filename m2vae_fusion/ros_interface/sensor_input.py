"""Incoming sensor messages as readings, checked: a LaserScan, Image or CompressedImage (with its
CameraInfo) becomes a Scan or CameraImage, or raises Dropped naming what is wrong with it, so a node
logs and counts a bad message instead of crashing on it (the encoder's description lists the checks).
The unchecked field-by-field conversion is m2vae_fusion.perception.ros_messages, shared with the bag
reader. sensor_msgs_py is not needed: it converts PointCloud2, and LaserScan fields are plain arrays.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from m2vae_fusion.perception.compressed_images import CompressedImageError, decode
from m2vae_fusion.perception.image_encodings import ImageFormatError
from m2vae_fusion.perception.readings import CameraImage, Scan
from m2vae_fusion.perception.ros_messages import image_from_msgs, scan_from_msg
from m2vae_fusion.ros_interface.drop_log import Dropped

MAX_BEAMS = 20_000  # per scan: 2-D LiDARs give a few thousand; more is a corrupt or hostile message
MAX_IMAGE_PIXELS = 4096 * 4096  # beyond any camera the nodes are meant for (the AMiRo's: 320 x 240)


@functools.cache
def image_bridge() -> tuple[Any | None, str]:
    """cv_bridge's CvBridge, or None and why it cannot be used ("" where cv_bridge is simply not
    installed, as with the PyPI wheels): images are then converted by perception.image_encodings.
    Tried on first use, not at import, and any exception counts: a distribution's cv_bridge, built
    against numpy 1.x, fails under numpy 2 with AttributeError (_ARRAY_API not found) or numpy's
    ImportError, a half-installed one with OSError; none of that may take the node down."""
    try:
        from cv_bridge import CvBridge

        return CvBridge(), ""
    except ModuleNotFoundError as exc:
        return None, "" if exc.name == "cv_bridge" else f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def scan_reading(msg: Any, what: str = "scan") -> Scan:
    """A LaserScan as a Scan, or Dropped naming what is wrong with it."""
    n, m = len(msg.ranges), len(msg.intensities)
    if n == 0:
        raise Dropped(what, "empty scan (no ranges)", kind="empty")
    if max(n, m) > MAX_BEAMS:
        raise Dropped(what, f"{n} ranges and {m} intensities: more than {MAX_BEAMS} beams", kind="huge")
    if m not in (0, n):
        raise Dropped(what, f"{n} ranges but {m} intensities", kind="intensities")
    geometry = {
        name: float(getattr(msg, name)) for name in ("angle_min", "angle_max", "angle_increment", "range_min", "range_max")
    }
    bad = [f"{name}={value}" for name, value in geometry.items() if not math.isfinite(value)]
    if bad:
        raise Dropped(what, f"non-finite {', '.join(bad)}", kind="geometry")
    if geometry["angle_increment"] == 0:
        raise Dropped(what, "angle_increment is 0", kind="geometry")
    if not 0 <= geometry["range_min"] < geometry["range_max"]:
        raise Dropped(
            what, f"need 0 <= range_min < range_max, got {geometry['range_min']} and {geometry['range_max']}", kind="geometry"
        )
    # drivers disagree on whether angle_max is the last beam or one past it: allow one beam either way
    beams = (geometry["angle_max"] - geometry["angle_min"]) / geometry["angle_increment"] + 1
    if abs(beams - n) > 1 + 1e-6:
        raise Dropped(
            what, f"{n} ranges, but angle_min..angle_max in steps of angle_increment span {beams:.1f} beams", kind="beam_count"
        )
    scan = scan_from_msg(msg)
    nan = int(np.isnan(scan.ranges).sum())
    if nan:
        raise Dropped(what, f"{nan} of {n} ranges are NaN (invalid measurements)", kind="nan_ranges")
    negative = int(((scan.ranges < 0) & np.isfinite(scan.ranges)).sum())
    if negative:  # -inf is REP-117's "too close"; a negative distance is a broken driver
        raise Dropped(what, f"{negative} of {n} ranges are negative", kind="negative_ranges")
    bad_intensities = int((~np.isfinite(scan.intensities)).sum())
    if bad_intensities:
        raise Dropped(what, f"{bad_intensities} of {m} intensities are NaN or inf", kind="intensities")
    return scan


def check_camera_info(info: Any | None, size: tuple[int, int] | None) -> None:
    """Dropped unless `info` has arrived, has usable intrinsics and is of an image of `size` (width,
    height; None: not known yet)."""
    if info is None:
        raise Dropped(
            "image", "no camera_info received yet: the intrinsics are needed to crop objects", waiting=True, kind="no_camera_info"
        )
    if size is not None and size != (info.width, info.height):
        raise Dropped("image", f"image is {size[0]}x{size[1]} but camera_info says {info.width}x{info.height}", kind="size")
    k = np.asarray(info.k, dtype=float)
    if k.shape != (9,) or not np.all(np.isfinite(k)) or not (k[0] > 0 and k[4] > 0):
        raise Dropped("image", f"camera_info has no usable intrinsics (k = {k.tolist()})", kind="camera_info")


def compressed_camera_reading(image: Any, info: Any | None) -> CameraImage:
    """A CompressedImage (JPEG or PNG) with its CameraInfo as a CameraImage, or Dropped naming what is
    wrong with them. Without camera_info the image is not decoded: it would be dropped anyway."""
    if len(image.data) == 0:
        raise Dropped("image", f"empty compressed image (format {image.format!r}, no data)", kind="zero_size")
    check_camera_info(info, None)
    try:
        rgb = decode(image.format, image.data, MAX_IMAGE_PIXELS)
    except CompressedImageError as exc:
        raise Dropped("image", str(exc), kind=exc.kind) from None
    check_camera_info(info, (rgb.shape[1], rgb.shape[0]))
    return image_from_msgs(image, info, rgb)


def camera_reading(image: Any, info: Any | None) -> CameraImage:
    """An Image with its CameraInfo as a CameraImage, or Dropped naming what is wrong with them."""
    if image.width == 0 or image.height == 0 or len(image.data) == 0:
        raise Dropped("image", f"zero-size image: {image.width}x{image.height}, {len(image.data)} bytes", kind="zero_size")
    if image.width * image.height > MAX_IMAGE_PIXELS or len(image.data) > 4 * MAX_IMAGE_PIXELS:
        raise Dropped(
            "image",
            f"{image.width}x{image.height} pixels, {len(image.data)} bytes: more than {MAX_IMAGE_PIXELS} pixels",
            kind="huge",
        )
    check_camera_info(info, (image.width, image.height))
    rgb = None
    bridge = image_bridge()[0]
    if bridge is not None:
        try:
            rgb = bridge.imgmsg_to_cv2(image, desired_encoding="rgb8")
        except Exception as exc:  # CvBridgeError, or numpy's TypeError / ValueError for a short buffer
            raise Dropped(
                "image",
                f"cv_bridge cannot convert {image.encoding!r} {image.width}x{image.height} step {image.step}: {exc}",
                kind="format",
            ) from None
    try:
        return image_from_msgs(image, info, rgb)
    except ImageFormatError as exc:
        raise Dropped("image", str(exc), kind="format") from None
