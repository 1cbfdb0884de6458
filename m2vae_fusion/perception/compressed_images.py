"""sensor_msgs/CompressedImage fields -> RGB array, decoded with OpenCV: what image_transport's
`compressed` transport publishes (`<image topic>/compressed`) and most robots record.

The `format` field (sensor_msgs/msg/CompressedImage.msg) is
`ORIG_PIXFMT; CODEC compressed [COMPRESSED_PIXFMT]`, e.g. "rgb8; jpeg compressed bgr8",
"mono8; png compressed ", or the older bare "jpeg" / "png"; an empty field means whatever the bytes
are. CODEC jpeg and png are supported, 8 bits per channel, colour or grey (grey is replicated into
three channels, as image_encodings.to_rgb does for mono8). compressedDepth (depth images) and other
transports are not.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import cv2
import numpy as np

from m2vae_fusion.perception.image_encodings import ImageFormatError

CODECS = ("jpeg", "png")
MAX_PIXELS = 4096 * 4096  # beyond any camera this project is meant for; a bigger header is a corrupt or hostile image
SIGNATURES = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}
# compressed_image_transport: "<orig>; <codec> compressed [<pixfmt>]"; the pixfmt may be missing (grey)
TRANSPORT_FORMAT = re.compile(r"^(?P<original>[^;]*);\s*(?P<codec>\S+)\s+compressed(?:\s+(?P<pixfmt>\S+))?\s*$")
# JPEG frame headers (SOF0..SOF15) carry the size; C4, C8 and CC share the range but are other segments
JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class CompressedImageError(ImageFormatError):
    """A CompressedImage that cannot be decoded; `kind` is a short name of the problem: format (the
    format field), huge (too many pixels), corrupt (the data)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Format:
    """A parsed `format` field. `codec` None: not named, the data's signature decides; `rgb_order`:
    the compressor was handed RGB, so what OpenCV decodes as B, G, R is really R, G, B."""

    codec: str | None
    rgb_order: bool = False


def parse_format(text: str) -> Format:
    """The `format` field of a CompressedImage, or CompressedImageError naming what is unsupported."""
    stripped = text.strip()
    if "compresseddepth" in stripped.lower():
        raise CompressedImageError(
            f"format {text!r}: compressedDepth (depth images) is not supported; the camera encoder takes colour or grey "
            "images (image_transport's 'compressed' transport, jpeg or png)",
            kind="format",
        )
    if not stripped:
        return Format(None)
    if stripped.lower() in ("jpeg", "jpg", "png"):
        return Format("png" if stripped.lower() == "png" else "jpeg")
    match = TRANSPORT_FORMAT.match(stripped)
    if match is None:
        raise CompressedImageError(
            f"format {text!r} is not image_transport's '<encoding>; <jpeg|png> compressed [<bgr8|rgb8>]' nor a bare 'jpeg' or 'png'",
            kind="format",
        )
    codec = match["codec"].lower()
    codec = "jpeg" if codec == "jpg" else codec
    if codec not in CODECS:
        raise CompressedImageError(
            f"format {text!r}: codec {match['codec']!r} is not supported; supported: {', '.join(CODECS)}", kind="format"
        )
    pixfmt = (match["pixfmt"] or "").lower()
    if pixfmt.endswith("16"):
        raise CompressedImageError(
            f"format {text!r}: 16-bit images ({pixfmt}) are not supported; 8 bits per channel only", kind="format"
        )
    return Format(codec, rgb_order=pixfmt.startswith("rgb"))


def codec_of(data: bytes) -> str | None:
    """jpeg or png by the data's leading signature, else None."""
    return next((codec for codec, signature in SIGNATURES.items() if data.startswith(signature)), None)


def header_size(codec: str, data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's frame header, read without decoding; None when
    the header is not where it should be (the decoder then has its say)."""
    if codec == "png":
        # signature (8), IHDR length and type (8), then width and height, big-endian
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    i = 2  # after SOI
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in JPEG_FRAME_MARKERS:
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def _quiet_imdecode(data: bytes) -> np.ndarray | None:
    """cv2.imdecode without OpenCV's own warning on stderr for bad data: the caller reports it once,
    in its own words (a node's drop log)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(level)


def decode(format_field: str, data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """H x W x 3 uint8 RGB from a CompressedImage's `format` and `data`; CompressedImageError names
    the bad field. Images of more than `max_pixels` are refused from their header, before decoding."""
    fmt = parse_format(format_field)
    data = bytes(data)
    if not data:
        raise CompressedImageError("data is empty", kind="corrupt")
    found = codec_of(data)
    if found is None:
        raise CompressedImageError(
            f"data ({len(data)} bytes, starting {data[:8].hex()}) is neither a JPEG nor a PNG", kind="corrupt"
        )
    if fmt.codec is not None and found != fmt.codec:
        raise CompressedImageError(f"format {format_field!r} says {fmt.codec} but the data is a {found}", kind="format")
    size = header_size(found, data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise CompressedImageError(f"{found} of {size[0]}x{size[1]} pixels: more than {max_pixels}", kind="huge")
    image = _quiet_imdecode(data)
    if image is None:
        raise CompressedImageError(
            f"OpenCV cannot decode the {len(data)} bytes of {found} data (truncated or corrupt)", kind="corrupt"
        )
    # the header was unreadable or lied: the decoded size is the last word
    if image.shape[0] * image.shape[1] > max_pixels:
        raise CompressedImageError(f"{found} of {image.shape[1]}x{image.shape[0]} pixels: more than {max_pixels}", kind="huge")
    if image.dtype != np.uint8:
        raise CompressedImageError(f"{found} with {image.dtype} samples is not supported; 8 bits per channel only", kind="format")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    channels = image.shape[2]
    if channels not in (3, 4):
        raise CompressedImageError(
            f"{found} with {channels} channels is not supported (grey, colour or colour with alpha)", kind="format"
        )
    order = [0, 1, 2] if fmt.rgb_order else [2, 1, 0]
    return np.ascontiguousarray(image[:, :, order])
