"""sensor_msgs/CompressedImage (image_transport's `compressed`, JPEG or PNG): the decoder, the camera
encoder's conversion and its reasons for dropping one (no DDS), training data from a bag whose camera
topic is compressed, against the same bag with raw images, and `m2vae record` keeping such a topic. The node over real DDS is in
test_encoder_node.py, beside the model it trains."""

from __future__ import annotations

import array
import math
import os
import signal
import struct
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from dds_probe import DdsProbe
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from sensor_msgs.msg import CompressedImage

from m2vae_fusion.core.errors import DataError
from m2vae_fusion.data.bag_frames import TopicNames, read_frames
from m2vae_fusion.data.rosbag_types import typestore
from m2vae_fusion.model.config import MODALITIES, load_stack_config
from m2vae_fusion.perception.compressed_images import CompressedImageError, decode, parse_format
from m2vae_fusion.perception.readings import CameraImage
from m2vae_fusion.ros_interface import reading_messages as messages
from m2vae_fusion.ros_interface.drop_log import Dropped
from m2vae_fusion.ros_interface.sensor_input import MAX_IMAGE_PIXELS, camera_reading, compressed_camera_reading
from m2vae_fusion.sim.collect import collect
from m2vae_fusion.training.dataset import extract

JPEG_TOLERANCE = 6.0  # mean absolute error in grey levels of a quality-95 JPEG of a smooth image


def smooth_rgb(height: int = 48, width: int = 64) -> np.ndarray:
    """Colour gradients with a few solid blocks: what a camera sees, and what JPEG keeps well (noise
    would not survive it, whatever the decoder did)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([255 * x / (width - 1), 255 * y / (height - 1), 128 + 100 * np.sin(x / 7.0)], axis=2)
    rgb[8:20, 10:30] = (220, 30, 30)
    rgb[28:44, 36:60] = (20, 200, 40)
    return np.round(rgb).astype(np.uint8)


def encode(codec: str, pixels: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg" if codec == "jpeg" else ".png", pixels)
    assert ok
    return data.tobytes()


def mean_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


# ---------------------------------------------------------------- the decoder


@pytest.mark.parametrize("format_field", ["rgb8; png compressed bgr8", "bgr8; png compressed bgr8", "png", ""])
def test_png_round_trips_exactly(format_field):
    rgb = smooth_rgb()
    decoded = decode(format_field, encode("png", rgb[:, :, ::-1]))  # OpenCV compresses B, G, R, as image_transport hands it bgr8
    assert decoded.dtype == np.uint8 and decoded.shape == rgb.shape
    np.testing.assert_array_equal(decoded, rgb)


@pytest.mark.parametrize("format_field", ["rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8", "jpeg", "jpg", ""])
def test_jpeg_decodes_close_to_the_original(format_field):
    rgb = smooth_rgb()
    decoded = decode(format_field, encode("jpeg", rgb[:, :, ::-1]))
    assert decoded.shape == rgb.shape
    assert mean_error(decoded, rgb) < JPEG_TOLERANCE
    # the channels are not swapped: red stays red
    assert mean_error(decoded, rgb[:, :, ::-1]) > 5 * JPEG_TOLERANCE


@pytest.mark.parametrize("codec", ["png", "jpeg"])
def test_rgb_compressed_pixel_format_keeps_its_channel_order(codec):
    """COMPRESSED_PIXFMT rgb8: the compressor was handed R, G, B, so what OpenCV reads as B, G, R is R, G, B."""
    rgb = smooth_rgb()
    decoded = decode(f"rgb8; {codec} compressed rgb8", encode(codec, rgb))
    assert mean_error(decoded, rgb) < (JPEG_TOLERANCE if codec == "jpeg" else 1e-9)


@pytest.mark.parametrize("codec", ["png", "jpeg"])
def test_mono_is_replicated_into_three_channels(codec):
    grey = smooth_rgb()[:, :, 1]
    decoded = decode(f"mono8; {codec} compressed ", encode(codec, grey))  # image_transport leaves the pixel format out for grey
    assert decoded.shape == grey.shape + (3,)
    assert np.array_equal(decoded[:, :, 0], decoded[:, :, 1]) and np.array_equal(decoded[:, :, 1], decoded[:, :, 2])
    assert mean_error(decoded[:, :, 0], grey) < (JPEG_TOLERANCE if codec == "jpeg" else 1e-9)


def test_alpha_is_dropped():
    rgb = smooth_rgb()
    bgra = np.concatenate([rgb[:, :, ::-1], np.full(rgb.shape[:2] + (1,), 77, np.uint8)], axis=2)
    np.testing.assert_array_equal(decode("bgra8; png compressed bgra8", encode("png", bgra)), rgb)


@pytest.mark.parametrize(
    "format_field, reason",
    [
        ("16UC1; compressedDepth png", "compressedDepth (depth images) is not supported"),
        ("32FC1; compressedDepth rvl", "compressedDepth (depth images) is not supported"),
        ("rgb8; tiff compressed bgr8", "codec 'tiff' is not supported; supported: jpeg, png"),
        ("theora", "format 'theora' is not image_transport's"),
        ("rgb8; jpeg", "format 'rgb8; jpeg' is not image_transport's"),
        ("mono16; png compressed mono16", "16-bit images (mono16) are not supported"),
    ],
)
def test_unsupported_formats_are_named(format_field, reason):
    with pytest.raises(CompressedImageError, match=reason.replace("(", r"\(").replace(")", r"\)")) as error:
        parse_format(format_field)
    assert error.value.kind == "format"


def test_format_must_match_the_data():
    with pytest.raises(CompressedImageError, match="format 'rgb8; png compressed bgr8' says png but the data is a jpeg") as error:
        decode("rgb8; png compressed bgr8", encode("jpeg", smooth_rgb()))
    assert error.value.kind == "format"


def test_sixteen_bit_png_is_refused():
    with pytest.raises(CompressedImageError, match="uint16 samples is not supported"):
        decode("png", encode("png", smooth_rgb().astype(np.uint16) * 256))


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "data is empty"),
        (b"GIF89a" + bytes(40), "is neither a JPEG nor a PNG"),
        (bytes(range(256)) * 4, "is neither a JPEG nor a PNG"),
        (encode("png", smooth_rgb())[:80], "OpenCV cannot decode the 80 bytes of png data"),
        (encode("jpeg", smooth_rgb())[:300], "OpenCV cannot decode the 300 bytes of jpeg data"),
    ],
)
def test_corrupt_data_is_named(data, reason):
    with pytest.raises(CompressedImageError, match=reason) as error:
        decode("", data)
    assert error.value.kind == "corrupt"


def _with_png_size(data: bytes, width: int, height: int) -> bytes:
    return data[:16] + struct.pack(">II", width, height) + data[24:]


def _with_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    sof = data.index(b"\xff\xc0")  # baseline frame header: marker, length, precision, height, width
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


@pytest.mark.parametrize("codec, resize", [("png", _with_png_size), ("jpeg", _with_jpeg_size)])
def test_huge_images_are_refused_by_their_header(codec, resize):
    data = encode(codec, smooth_rgb())
    assert decode("", resize(data, 64, 48)).shape == (48, 64, 3)  # the patch itself leaves a valid image
    # 60000 x 60000 would decode (if at all) into 10 GB: the header alone must refuse it
    with pytest.raises(CompressedImageError, match=f"{codec} of 60000x60000 pixels: more than {MAX_IMAGE_PIXELS}") as error:
        decode("", resize(data, 60000, 60000), MAX_IMAGE_PIXELS)
    assert error.value.kind == "huge"
    with pytest.raises(CompressedImageError, match=f"{codec} of 64x48 pixels: more than 1000"):
        decode("", data, max_pixels=1000)


# ---------------------------------------------------------------- the camera encoder's conversion


def camera_frame() -> CameraImage:
    rgb = smooth_rgb()
    return CameraImage(rgb, 40.0, 40.0, rgb.shape[1] / 2, rgb.shape[0] / 2, "camera_optical_frame")


def compressed_msg(frame: CameraImage, codec: str, stamp: float = 1.0, **fields) -> CompressedImage:
    image = messages.image(frame, stamp)
    msg = CompressedImage(
        header=image.header, format=f"rgb8; {codec} compressed bgr8", data=array.array("B", encode(codec, frame.rgb[:, :, ::-1]))
    )
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize("codec", ["png", "jpeg"])
def test_compressed_camera_reading_matches_the_raw_one(codec):
    frame = camera_frame()
    info = messages.camera_info(frame, 1.0)
    raw = camera_reading(messages.image(frame, 1.0), info)
    got = compressed_camera_reading(compressed_msg(frame, codec), info)
    assert (got.fx, got.fy, got.cx, got.cy, got.frame_id) == (raw.fx, raw.fy, raw.cx, raw.cy, raw.frame_id)
    assert mean_error(got.rgb, raw.rgb) < (JPEG_TOLERANCE if codec == "jpeg" else 1e-9)


def test_bad_compressed_images_are_dropped_with_their_reason():
    frame = camera_frame()
    info = messages.camera_info(frame, 1.0)
    small = messages.camera_info(CameraImage(np.zeros((10, 20, 3), np.uint8), 40.0, 40.0, 10.0, 5.0, "camera_optical_frame"), 1.0)
    cases = [
        (
            compressed_msg(frame, "png", data=array.array("B")),
            info,
            "zero_size",
            "empty compressed image (format 'rgb8; png compressed bgr8', no data)",
        ),
        (
            compressed_msg(frame, "png", format="16UC1; compressedDepth png"),
            info,
            "format",
            "compressedDepth (depth images) is not supported",
        ),
        (
            compressed_msg(frame, "jpeg", data=array.array("B", b"\xff\xd8\xff" + bytes(100))),
            info,
            "corrupt",
            "OpenCV cannot decode the 103 bytes of jpeg data",
        ),
        (compressed_msg(frame, "png"), small, "size", "image is 64x48 but camera_info says 20x10"),
    ]
    for msg, camera_info, kind, reason in cases:
        with pytest.raises(Dropped) as dropped:
            compressed_camera_reading(msg, camera_info)
        assert (dropped.value.what, dropped.value.kind) == ("image", kind)
        assert reason in dropped.value.reason
    with pytest.raises(Dropped, match="no camera_info") as dropped:
        compressed_camera_reading(compressed_msg(frame, "png"), None)
    assert dropped.value.waiting


# ---------------------------------------------------------------- training data from a bag with compressed images


def compress_bag(
    source: Path, out: Path, codec: str, topic: str = "/camera/image_raw/compressed", corrupt_at: int | None = None
) -> None:
    """A copy of `source` whose /camera/image_raw is re-published as CompressedImage on `topic`, the way
    image_transport's republisher (and a robot's bag) holds it; the `corrupt_at`-th image truncated."""
    store = typestore()
    kind = "sensor_msgs/msg/CompressedImage"
    Compressed = store.types[kind]
    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    connections = {}
    with AnyReader([source], default_typestore=store) as reader:
        images = 0
        for connection, stamp, raw in reader.messages():
            name, msgtype = connection.topic, connection.msgtype
            if name == "/camera/image_raw":
                image = reader.deserialize(raw, msgtype)
                data = encode(codec, np.asarray(image.data, np.uint8).reshape(image.height, image.width, 3)[:, :, ::-1])
                if images == corrupt_at:
                    data = data[: len(data) // 3]
                images += 1
                name, msgtype = topic, kind
                raw = store.serialize_cdr(
                    Compressed(image.header, f"rgb8; {codec} compressed bgr8", np.frombuffer(data, np.uint8)), kind
                )
            if name not in connections:
                connections[name] = writer.add_connection(name, msgtype, typestore=store)
            writer.write(connections[name], stamp, raw)
    writer.close()


@pytest.fixture(scope="module")
def raw_bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compressed") / "raw"
    collect(path, 8, seed=5)
    return path


@pytest.mark.parametrize("codec", ["png", "jpeg"])
def test_bag_with_compressed_images_gives_the_training_data_of_the_raw_one(raw_bag, tmp_path, codec):
    compress_bag(raw_bag, tmp_path / codec, codec)
    raw, compressed = read_frames([raw_bag]), read_frames([tmp_path / codec])
    assert (
        "/camera/image_raw" not in compressed.topics
        and compressed.topics["/camera/image_raw/compressed"] == raw.topics["/camera/image_raw"]
    )
    assert len(compressed.frames) == len(raw.frames) == 8
    for a, b in zip(raw.frames, compressed.frames):
        assert a.stamp == b.stamp and a.image is not None and b.image is not None
        assert (b.image.fx, b.image.cx, b.image.frame_id) == (a.image.fx, a.image.cx, a.image.frame_id)
        if codec == "png":
            np.testing.assert_array_equal(b.image.rgb, a.image.rgb)
        else:
            assert mean_error(b.image.rgb, a.image.rgb) < JPEG_TOLERANCE
    config = load_stack_config().perception
    expected, got = extract(raw, config), extract(compressed, config)
    np.testing.assert_array_equal(got.labels, expected.labels)
    for m in MODALITIES:
        np.testing.assert_array_equal(got.rows[m], expected.rows[m])
        if m == "camera" and codec == "jpeg":
            assert float(np.abs(got.views[m] - expected.views[m]).mean()) < JPEG_TOLERANCE / 255
        else:
            np.testing.assert_array_equal(got.views[m], expected.views[m])
    assert expected.seen("camera").sum() > 0  # the comparison saw camera views at all


def test_a_compressed_image_topic_can_be_named_directly(raw_bag, tmp_path):
    """The reader goes by the message type in the bag, not by the topic's name."""
    compress_bag(raw_bag, tmp_path / "named", "png", topic="/front_camera/image")
    frames = read_frames([tmp_path / "named"], TopicNames(image="/front_camera/image"))
    np.testing.assert_array_equal(frames.frames[0].image.rgb, read_frames([raw_bag]).frames[0].image.rgb)


def test_a_corrupt_compressed_image_in_a_bag_is_named(raw_bag, tmp_path):
    compress_bag(raw_bag, tmp_path / "corrupt", "png", corrupt_at=0)
    with pytest.raises(
        DataError, match=r"/camera/image_raw/compressed: the CompressedImage stamped 0\.100 s: OpenCV cannot decode"
    ):
        read_frames([tmp_path / "corrupt"])


def test_record_keeps_a_compressed_image_topic(ros_env, processes, tmp_path):
    """`m2vae record` stores CompressedImage as it came off the wire, so its bag trains like above."""
    probe = DdsProbe(int(ros_env["ROS_DOMAIN_ID"]), "compressed_camera", "m2vae record")
    try:
        frame = camera_frame()
        published = compressed_msg(frame, "jpeg")
        publisher = probe.node.create_publisher(CompressedImage, "/camera/image_raw/compressed", 10)
        bag = tmp_path / "bag"
        recorder = processes.start("m2vae", "record", "--out", str(bag), "/camera/image_raw/compressed", "--wait", "30")
        # the bag folder appears once the recorder has found the topic; then a second more of images
        until = [math.inf]

        def publish() -> None:
            if bag.exists() and until[0] == math.inf:
                until[0] = time.monotonic() + 1.0
            publisher.publish(published)
            time.sleep(0.05)

        probe.spin_until(lambda: time.monotonic() > until[0], 60, recorder, tick=publish)
        os.killpg(recorder.pid, signal.SIGINT)
        out, _ = recorder.communicate(timeout=30)
        assert recorder.returncode == 0, out
    finally:
        probe.close()
    store = typestore()
    with Reader(bag) as reader:
        records = [(c.topic, c.msgtype, store.deserialize_cdr(raw, c.msgtype)) for c, _, raw in reader.messages()]
    assert len(records) >= 5, out
    for topic, msgtype, msg in records:
        assert (topic, msgtype, msg.format) == (
            "/camera/image_raw/compressed",
            "sensor_msgs/msg/CompressedImage",
            published.format,
        )
        assert bytes(msg.data) == bytes(published.data)
    assert mean_error(decode(records[0][2].format, records[0][2].data), frame.rgb) < JPEG_TOLERANCE
