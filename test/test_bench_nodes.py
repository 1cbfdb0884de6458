"""`m2vae bench nodes`: a tiny end-to-end run over real DDS gives the table and JSON with positive,
finite figures (never absolute times); a node that never answers or dies is a clear error, and the
bench stops the node it started."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from m2vae_fusion.benchmarks import node_frames, node_process, node_replay
from m2vae_fusion.resources import config_path, default_model_dir, share_dir

FIGURES = ("node_ms", "bare_ms", "forward_ms")


def test_tiny_run_over_dds(processes, ros_env, tmp_path: Path) -> None:
    out = tmp_path / "nodes.json"
    bench = processes.start(
        "m2vae",
        "bench",
        "nodes",
        "--messages",
        "20",
        "--warmup",
        "3",
        "--modalities",
        "lidar",
        "--domain-id",
        ros_env["ROS_DOMAIN_ID"],
        "--json",
        str(out),
    )
    output, _ = bench.communicate(timeout=90)
    assert bench.returncode == 0, output
    header = next(line for line in output.splitlines() if line.startswith("modality"))
    assert [c.strip() for c in header.split("|")][:8] == [
        "modality",
        "node p50",
        "node p99",
        "bare p50",
        "bare p99",
        "ratio p50",
        "CPU (cores)",
        "kept up",
    ]
    rows = [line.split("|")[0].strip() for line in output.splitlines() if "|" in line and not line.startswith("modality")]
    assert rows == ["lidar"], output

    results = json.loads(out.read_text())
    assert results["messages"] == 20 and results["rate_hz"] == 30 and list(results["modalities"]) == ["lidar"]
    lidar = results["modalities"]["lidar"]
    for key in FIGURES:
        assert 0 < lidar[key]["p50"] <= lidar[key]["p99"] and math.isfinite(lidar[key]["p99"]), (key, lidar[key])
    assert lidar["node_ms"]["samples"] == lidar["answered"] >= 1 and lidar["sent"] == 20
    for key in ("ratio_p50", "cpu_cores", "cpu_ms_per_message", "sent_rate_hz", "encodings_per_message"):
        assert lidar[key] > 0 and math.isfinite(lidar[key]), (key, lidar[key])
    assert lidar["nonfinite_encodings"] == 0 and isinstance(lidar["kept_up"], bool)
    assert results["machine"]["cpus"] >= 1 and results["targets"]["ratio_p50"] == 1.5


@pytest.fixture(scope="module")
def lidar_frames():
    from m2vae_fusion.model.perception_model import PerceptionModel

    model = PerceptionModel.load(default_model_dir())
    params = node_process.encoder_parameters(config_path("encoders.yaml"), "lidar")
    static_msg, static, frames = node_frames.render_frames(
        share_dir() / "worlds" / "arena.sdf", ["lidar"], model, {"lidar": params}, 30.0
    )
    return model, params, static_msg, static, frames["lidar"]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        # the node runs and subscribes but sees no object in range: it never publishes
        (["-p", "min_distance:=0.5", "-p", "max_distance:=0.6"], "sent no encodings on /bench/encodings within 3 s"),
        (["-p", "modality:=sonar"], "exited with status 2"),
    ],
    ids=["silent", "dies"],
)
def test_a_node_without_encodings_is_a_clear_error(overrides, error, ros_env, lidar_frames, monkeypatch) -> None:
    model, params, static_msg, static, frames = lidar_frames
    started = []
    monkeypatch.setattr(node_process.NodeProcess, "__init__", _recording(node_process.NodeProcess.__init__, started))
    command = node_process.encoder_command("lidar", config_path("encoders.yaml"), None) + overrides
    with pytest.raises(node_process.BenchError, match=error) as raised:
        node_replay.measure_modality(
            "lidar",
            frames,
            static_msg,
            static,
            model,
            params,
            ros_env,
            command,
            rate_hz=30.0,
            messages=5,
            warmup=0,
            startup_timeout_s=30.0,
            answer_timeout_s=3.0,
            log=lambda text: None,
        )
    assert "the lidar encoder node" in str(raised.value)
    assert len(started) == 1 and started[0].proc.poll() is not None  # stopped whatever happened


def _recording(init, started: list):
    def wrapped(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        started.append(self)

    return wrapped


@pytest.mark.slow
def test_bad_arguments_are_refused() -> None:
    proc = subprocess.run(["m2vae", "bench", "nodes", "--messages", "1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--messages must be >= 2" in proc.stderr, proc.stderr
