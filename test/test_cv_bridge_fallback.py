"""The camera encoder with a cv_bridge that cannot be used.

A distribution's cv_bridge is compiled against its numpy 1.x; with numpy 2 in front of it the import
fails with AttributeError ("_ARRAY_API not found") or numpy's ImportError, not only the
ImportError of a missing package. Each case is a fake `cv_bridge` package first on PYTHONPATH, in a
fresh interpreter (the import is tried once per process): the node still starts, converts images
with the project's own converter, and says why in exactly one warning.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WARNING = "cv_bridge cannot be used"

# Starts a camera EncoderNode (the shipped model) in a private context, converts a few images the way
# the node's image callback does, and prints what the converter returned.
PROBE = r"""
import numpy as np
import rclpy
from rclpy.parameter import Parameter

from m2vae_fusion.nodes.encoder import EncoderNode
from m2vae_fusion.ros_interface.sensor_input import camera_reading
from m2vae_fusion.ros_interface import reading_messages
from m2vae_fusion.perception.readings import CameraImage

context = rclpy.Context()
rclpy.init(context=context)
node = EncoderNode(context=context, parameter_overrides=[Parameter("modality", value="camera")])
rgb = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
frame = CameraImage(rgb, 10.0, 10.0, 4.0, 3.0, "camera_optical_frame")
for _ in range(5):
    reading = camera_reading(reading_messages.image(frame, 1.0), reading_messages.camera_info(frame, 1.0))
print("PIXELS", "same" if np.array_equal(reading.rgb, rgb) else "other", flush=True)
node.destroy_node()
rclpy.shutdown(context=context)
"""

FAKES = {
    # what numpy 2 does to an extension module built against numpy 1.x
    "attribute_error": 'raise AttributeError("_ARRAY_API not found")\n',
    "import_error": 'raise ImportError("numpy.core.multiarray failed to import")\n',
    # what a machine without cv_bridge raises (stands in for it where a system ROS 2 has one)
    "missing": 'raise ModuleNotFoundError("No module named \'cv_bridge\'", name="cv_bridge")\n',
    # a usable cv_bridge: the node must take it (its pixels are all 7s)
    "working": (
        "import numpy as np\n\n\n"
        "class CvBridge:\n"
        "    def imgmsg_to_cv2(self, msg, desired_encoding='passthrough'):\n"
        "        return np.full((msg.height, msg.width, 3), 7, np.uint8)\n"
    ),
}


def run_probe(tmp_path: Path, ros_env: dict[str, str], fake: str) -> subprocess.CompletedProcess:
    package = tmp_path / fake / "cv_bridge"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKES[fake])
    env = dict(ros_env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package.parent), env.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.parametrize(
    ("fake", "reason"),
    [
        ("attribute_error", "AttributeError: _ARRAY_API not found"),
        ("import_error", "ImportError: numpy.core.multiarray failed to import"),
    ],
)
def test_broken_cv_bridge_falls_back_with_one_warning(tmp_path: Path, ros_env: dict[str, str], fake: str, reason: str) -> None:
    proc = run_probe(tmp_path, ros_env, fake)
    log = proc.stdout + proc.stderr
    warnings = [line for line in log.splitlines() if WARNING in line]
    assert len(warnings) == 1, log
    assert "WARN" in warnings[0] and reason in warnings[0], warnings
    assert "images converted by m2vae_fusion.perception.image_encodings" in log
    assert "PIXELS same" in proc.stdout


def test_usable_cv_bridge_is_taken(tmp_path: Path, ros_env: dict[str, str]) -> None:
    proc = run_probe(tmp_path, ros_env, "working")
    log = proc.stdout + proc.stderr
    assert WARNING not in log
    assert "images converted by cv_bridge" in log
    assert "PIXELS other" in proc.stdout  # the fake's pixels, not the project's conversion


def test_missing_cv_bridge_is_no_warning(tmp_path: Path, ros_env: dict[str, str]) -> None:
    """No cv_bridge at all (the PyPI wheels) is an ordinary set-up: the start-up line says which
    converter runs, without a warning."""
    proc = run_probe(tmp_path, ros_env, "missing")
    log = proc.stdout + proc.stderr
    assert WARNING not in log
    assert "images converted by m2vae_fusion.perception.image_encodings" in log
    assert "PIXELS same" in proc.stdout
