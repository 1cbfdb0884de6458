"""`m2vae bench fusion` and `m2vae bench scale`, tiny runs with the shipped model: the table and the JSON
have every row, all figures are positive and finite (never absolute times or ratio thresholds)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # benchmark runs in subprocesses


def numbers(value) -> list[float]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def bench(*args: str, json_path: Path) -> tuple[str, dict]:
    proc = subprocess.run(["m2vae", "bench", *args, "--json", str(json_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(json_path.read_text())
    assert all(math.isfinite(x) and x > 0 for x in numbers(results)), results
    return proc.stdout, results


def test_bench_fusion_tiny(tmp_path: Path) -> None:
    out, results = bench("fusion", "--repetitions", "3", "--batch-sizes", "2", "5", json_path=tmp_path / "fusion.json")
    assert set(results["single"]) == {"update", "fuse", "encode"}
    assert all(set(row) == {"p50_us", "p99_us"} for row in results["single"].values())
    assert list(results["per_encoding"]) == ["2", "5"]
    assert all(set(row) == {"batched", "single", "speedup_p50"} for row in results["per_encoding"].values())
    assert results["update_over_encode_p50"] == results["single"]["update"]["p50_us"] / results["single"]["encode"]["p50_us"]
    assert results["repetitions"] == 3 and results["latent_dim"] == 10 and results["threads"] == 1
    assert "update / encode at p50" in out and "BeliefStore.update, one encoding" in out
    assert [line.split()[0] for line in out.splitlines()[-2:]] == ["2", "5"]


def test_bench_scale_tiny(tmp_path: Path) -> None:
    out, results = bench(
        "scale",
        "--objects",
        "50",
        "4",
        "--robots",
        "3",
        "1",
        "--bursts",
        "3",
        "--publishes",
        "2",
        json_path=tmp_path / "scale.json",
    )
    assert results["objects"] == [4, 50] and results["robots"] == [1, 3]
    for section in ("burst", "publish"):
        assert list(results[section]) == ["1", "3"] and all(list(per_n) == ["4", "50"] for per_n in results[section].values())
    assert set(results["burst"]["3"]["50"]) == {"update", "add_latents", "due_latents", "total"}
    assert set(results["growth_p50"]["1"]) == {"update", "total"}
    # all objects' beliefs: more objects, more bytes
    assert results["publish"]["1"]["50"]["beliefs_bytes"] > results["publish"]["1"]["4"]["beliefs_bytes"]
    latent = results["latent_embedding"]
    assert latent["latent_dim"] == 10 and latent["object_id"] == "object_1234" and latent["bytes"] <= results["goal_latent_bytes"]
    rows = [line.split()[:2] for line in out.splitlines() if line.split()[:1] in (["1"], ["3"])]
    assert rows[:4] == [["1", "4"], ["1", "50"], ["3", "4"], ["3", "50"]]
    assert f"LatentEmbedding on the wire: {latent['bytes']} bytes" in out


def test_benches_reject_bad_sizes() -> None:
    for args, message in ((["fusion", "--repetitions", "0"], "must be >= 1"), (["scale", "--objects", "0"], "must be >= 1")):
        proc = subprocess.run(["m2vae", "bench", *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
