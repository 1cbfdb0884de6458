"""`m2vae fuzz`: its schedule is seeded and draws every case (without a fleet key, every case but
the signature's); each case, fed to in-process nodes with and without a fleet key, is dropped for
exactly the reason it names (or, a flood, accepted) and nothing it sends gets encoded; and the command
against the real node graph over DDS meets its goals with a small N, with signed latents (forged,
replayed, unsigned, wrong-key among them) and without."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_robustness import T, context, dropped, encoding, feed, make_node, ready_encoder, robot  # noqa: F401 (fixtures)

from m2vae_fusion.nodes.fusion import FusionNode
from m2vae_fusion.robustness.campaign import fleet_keys
from m2vae_fusion.robustness.cases import ACCEPTED, CASES, ENCODERS, FLOOD_RUN, Scene, schedule
from m2vae_fusion.robustness.observer import belief_problems
from m2vae_fusion.robustness.report import all_counted_but_lost, lost_in_transport
from m2vae_msgs.msg import ObjectBelief, ObjectBeliefArray


def test_schedule_is_seeded_and_draws_every_case() -> None:
    robots = ("robot1", "robot2")
    plan = schedule(3000, 3, robots)
    assert [(c.name, r) for c, r in plan] == [(c.name, r) for c, r in schedule(3000, 3, robots)]
    assert [c.name for c, _ in plan] != [c.name for c, _ in schedule(3000, 4, robots)]
    counts = Counter(c.name for c, _ in plan)
    assert set(counts) == {c.name for c in CASES} and {r for _, r in plan} == set(robots)
    assert next(c for c, _ in plan if c.topic == "latent").name == "latent_flood"  # the replays copy it
    floods = counts.pop("latent_flood")
    assert floods >= FLOOD_RUN and max(counts.values()) < 3 * np.mean(list(counts.values()))  # no case crowds out the others
    unsigned = Counter(c.name for c, _ in schedule(3000, 3, robots, signed=False))
    assert set(unsigned) == {c.name for c in CASES if not c.needs_key}
    assert {c.name for c in CASES if c.needs_key} == {
        "latent_unsigned",
        "latent_wrong_key",
        "latent_forged",
        "latent_replayed_resequenced",
    }


def test_a_forged_latent_changes_what_was_signed_and_a_replay_keeps_it(tmp_path: Path) -> None:
    """Forgeries are judged by the signature alone, replays by the store: each forged latent differs
    from its signed original in a signed field or the signature; the exact replay verifies."""
    _, signer, intruder = fleet_keys(tmp_path)
    scene = Scene(("robot1",), "m2vae-0", 10, now_ns=5 * 10**9, signer=signer, intruder=intruder)
    by_name = {c.name: c for c in CASES}
    rng = np.random.default_rng(0)
    by_name["latent_flood"].make(scene, rng, "robot1")  # the replays' original
    assert signer.verify(scene.replayable) is None
    assert signer.verify(by_name["latent_replayed"].make(scene, rng, "robot1")) is None
    assert signer.verify(by_name["latent_replayed_older"].make(scene, rng, "robot1")) is None  # re-signed: for the stale check
    for _ in range(500):  # every forgery many times over: none may leave the signed content as it was
        assert signer.verify(by_name["latent_forged"].make(scene, rng, "robot1")).kind == "signature"
        assert signer.verify(by_name["latent_replayed_resequenced"].make(scene, rng, "robot1")).kind == "signature"
    assert signer.verify(by_name["latent_wrong_key"].make(scene, rng, "robot1")).kind == "unknown_key"
    assert signer.verify(by_name["latent_unsigned"].make(scene, rng, "robot1")).kind == "unsigned"


@pytest.mark.parametrize("signed", [True, False], ids=["fleet_key", "no_fleet_key"])
def test_every_case_is_dropped_for_the_reason_it_names(make_node, robot, tmp_path: Path, signed: bool) -> None:
    # use_sim_time without /clock: ROS time 0, so "future" means ahead of odometry / the data clock (both at T)
    encoders = {m: ready_encoder(make_node, robot, m, use_sim_time=True) for m in ENCODERS}
    for node in encoders.values():
        feed(node, robot, T)  # a good message on every input: what out-of-order stamps are compared with
    key_file, signer, intruder = fleet_keys(tmp_path) if signed else ("", None, None)
    fusion = make_node(FusionNode, fusion_frame="map", robot_id="robot1", use_sim_time=True, fleet_key=str(key_file))
    fusion._on_encoding(encoding(fusion.model.model_id, "lidar", T))
    fusion._on_batch()
    assert (fusion.fleet_key is not None) == signed
    scene = Scene(("robot1",), fusion.model.model_id, fusion.model.config.fusion.latent_dim, now_ns=round(T * 1e9))
    scene.signer, scene.intruder = signer, intruder
    scene.bases = {("robot1", "scan"): robot.scan, ("robot1", "image"): robot.image, ("robot1", "ir"): robot.ir}
    published = {m: len(node.sent) for m, node in encoders.items()}
    rng = np.random.default_rng(0)
    for case in (c for c in CASES if signed or not c.needs_key):
        targets = [fusion] if case.topic == "latent" else [encoders[name.removesuffix("_encoder")] for name in case.nodes]
        before = [dict(node.counters.counts) for node in targets]
        for _ in range(3):
            msg = case.make(scene, rng, "robot1")
            for node in targets:
                if case.topic == "latent":
                    node._on_latent(msg)
                    node._on_batch()
                elif case.topic == "scan":
                    node._on_scan(msg)
                else:
                    node._on_partner(msg)
        for node, counts in zip(targets, before):
            rose = {k: n - counts.get(k, 0) for k, n in dropped(node).items() if n > counts.get(k, 0)}
            accepted = node.counters.counts.get(ACCEPTED, 0) - counts.get(ACCEPTED, 0)
            if case.may_accept:
                assert set(rose) <= {case.key} and sum(rose.values()) + accepted == 3, (case.name, rose, accepted)
            else:
                assert rose == {case.key: 3}, (case.name, rose)
    assert {m: len(node.sent) for m, node in encoders.items()} == published  # nothing the fuzz sent was encoded


def test_a_belief_with_any_non_finite_number_is_reported() -> None:
    good = ObjectBelief(object_id="a", mean=[0.0, 1.0], log_var=[0.0, 0.0], class_probabilities=[0.5, 0.5])
    bad = ObjectBelief(object_id="b", mean=[0.0, math.nan], log_var=[0.0, 0.0], class_probabilities=[0.5, 0.5])
    worse = ObjectBelief(object_id="c", mean=[0.0], log_var=[0.0], class_probabilities=[math.inf])
    worse.position.x = math.nan
    problems = belief_problems(ObjectBeliefArray(beliefs=[good, bad, worse]))
    assert [p.split(":")[0] for p in problems] == ["b", "c"]


def test_only_messages_that_never_reached_a_node_excuse_a_missing_count() -> None:
    received = {f"/robot1/{m}_encoder": {"received scan": n} for m, n in zip(ENCODERS, (98, 100, 100))}
    received["/robot1/camera_encoder"]["received image"] = 50
    received["/robot1/ir_encoder"]["received IR reading"] = 40
    seen = Counter({("robot1", "scan"): 99, ("robot1", "image"): 51, ("robot1", "ir"): 40})  # this process's own count
    lost = lost_in_transport(received, seen, ("robot1",))
    assert lost == {"/robot1/camera_encoder": {"scan": 2, "image": 1}}
    row = {"node": "/robot1/camera_encoder", "counter": "dropped scan: huge", "expected": 10, "counted": 8}
    assert all_counted_but_lost([row], lost) and not all_counted_but_lost([{**row, "counted": 7}], lost)
    assert not all_counted_but_lost([{**row, "node": "/robot1/ir_encoder", "counter": "dropped IR reading: empty"}], lost)
    assert not all_counted_but_lost(
        [{**row, "node": "/robot1/fusion", "counter": "dropped latent: size"}], lost
    )  # reliable: no allowance


@pytest.mark.parametrize("signed", [True, False], ids=["fleet_key", "no_fleet_key"])
def test_fuzz_command_meets_its_goals(processes, tmp_path: Path, signed: bool) -> None:
    out = tmp_path / "fuzz.json"
    argv = ["m2vae", "fuzz", "--messages", "200", "--seed", "1", "--json", str(out), "--log-dir", str(tmp_path / "logs")]
    proc = processes.start(*argv, *([] if signed else ["--no-fleet-key"]))
    text, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, text
    results = json.loads(out.read_text())
    assert results["met"] and results["crashes"] == {} and results["non_finite_beliefs"] == 0, text
    assert sum(results["sent"].values()) == 200 and results["beliefs_checked"] > 0
    assert all(row["counted"] >= row["expected"] > 0 for row in results["counts"])
    assert {row["node"] for row in results["counts"]} == {f"/robot1/{m}_encoder" for m in ENCODERS} | {"/robot1/fusion"}
    assert "goals met" in text and "Traceback" not in text
    assert results["fleet_key"] is signed and ("signed with a fresh fleet key" in text) is signed
    signature_cases = {"latent_unsigned", "latent_wrong_key", "latent_forged", "latent_replayed_resequenced"}
    assert signature_cases & set(results["sent"]) == (signature_cases if signed else set())
    fusion = {row["counter"] for row in results["counts"] if row["node"] == "/robot1/fusion"}
    assert {"dropped latent: duplicate", "dropped latent: stale"} <= fusion  # replays of signed latents, too
    if signed:
        assert {"dropped latent: unsigned", "dropped latent: unknown_key", "dropped latent: signature"} <= fusion
    print(text)
