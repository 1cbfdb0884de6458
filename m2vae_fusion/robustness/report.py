"""What a fuzz run found: expected vs counted rejections, losses put down to transport, and the table."""

from __future__ import annotations

from collections import Counter
from typing import Any

from m2vae_fusion.robustness.cases import ACCEPTED, ENCODERS
from m2vae_fusion.robustness.observer import Fuzzer, Outcome, counted

INPUTS = {"scan": ("scan", ENCODERS), "image": ("image", ("camera",)), "ir": ("IR reading", ("ir",))}  # topic -> (what, encoders)


def lost_in_transport(
    received: dict[str, dict[str, int]], seen: Counter[tuple[str, str]], robots: tuple[str, ...]
) -> dict[str, dict[str, int]]:
    """encoder -> input (scan, image, IR reading) -> messages on the input's topic that this process
    or a sibling encoder received and the encoder did not: lost on the way to it."""
    lost: dict[str, dict[str, int]] = {}
    for robot in robots:
        for topic, (what, modalities) in INPUTS.items():
            got = {
                f"/{robot}/{m}_encoder": received.get(f"/{robot}/{m}_encoder", {}).get(f"received {what}", 0) for m in modalities
            }
            most = max([*got.values(), seen.get((robot, topic), 0)])
            for node, n in got.items():
                if most > n:
                    lost.setdefault(node, {})[what] = most - n
    return lost


def all_counted_but_lost(rows: list[dict[str, Any]], lost: dict[str, dict[str, int]]) -> bool:
    """Every row counted at least what was sent, but for a node's rows of one input as many as it lost of that input."""
    short: dict[tuple[str, str], int] = {}
    for row in rows:
        what = row["counter"].removeprefix("dropped ").split(":")[0]
        short[(row["node"], what)] = short.get((row["node"], what), 0) + max(0, row["expected"] - row["counted"])
    return all(n <= lost.get(node, {}).get(what, 0) for (node, what), n in short.items())


def count_rows(outcome: Outcome, fuzzer: Fuzzer, start: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Expected vs counted per node and counter; floods per fusion node as one row."""
    rows = [
        {"node": node, "counter": key, "expected": n, "counted": counted(fuzzer, start, node, (key,))}
        for (node, key), n in sorted(outcome.expected.items())
    ]
    flood_keys = ("dropped latent: rate", "dropped latent: robots", ACCEPTED)
    for node, n in sorted(outcome.lenient.items()):
        rows.append(
            {
                "node": node,
                "counter": " | ".join(flood_keys),
                "expected": n,
                "counted": counted(fuzzer, start, node, flood_keys),
                "each": {key: counted(fuzzer, start, node, (key,)) for key in flood_keys},
            }
        )
    return rows


def table(results: dict[str, Any]) -> str:
    lines = [
        f"m2vae fuzz: {results['messages']} messages (seed {results['seed']}) against {results['nodes']} nodes of "
        f"{results['robots']} robot(s) on {results['machine']}; latents "
        + ("signed with a fresh fleet key" if results.get("fleet_key") else "unsigned (no fleet key)"),
        f"graph up in {results['startup_s']} s; messages sent in {results['fuzz_s']} s ({results['messages_per_s']} / s, "
        f"{results['flow_control_stalls']} flow-control stalls)",
        "",
        f"{'node':<24} {'counter':<62} {'expected':>8} {'counted':>8}",
    ]
    for row in results["counts"]:
        mark = "" if row["counted"] >= row["expected"] else "  MISSING"
        lines.append(f"{row['node']:<24} {row['counter']:<62} {row['expected']:>8} {row['counted']:>8}{mark}")
        if "each" in row:
            lines.append(f"{'':<24}   ({', '.join(f'{key} {n}' for key, n in row['each'].items())})")
    if results["lost_in_transport"]:
        lines += [
            "",
            "lost before they reached the node (this process or a sibling encoder received them): "
            + ", ".join(f"{node} {n} {what}" for node, lost in results["lost_in_transport"].items() for what, n in lost.items()),
        ]
    if results["unexpected_drops"]:
        lines += ["", "other drops during the run (the simulated sensors' own, not the fuzz's):"]
        lines += [f"  {key}: {n}" for key, n in sorted(results["unexpected_drops"].items())]
    lines += [
        "",
        f"encodings fused during the run: {', '.join(f'{k} {v}' for k, v in results['encodings_fused_during_run'].items())}",
    ]
    lines += [
        "",
        f"crashes: {len(results['crashes'])}"
        + (f" ({', '.join(f'{k} status {v}' for k, v in results['crashes'].items())})" if results["crashes"] else ""),
        f"non-finite beliefs: {results['non_finite_beliefs']} of {results['beliefs_checked']} beliefs checked",
        f"every rejection counted: {'yes' if results['goals']['every rejection counted'] else 'NO'}",
        "",
        "goals " + ("met" if results["met"] else "NOT met: " + ", ".join(g for g, ok in results["goals"].items() if not ok)),
    ]
    for key, tail in results["crash_logs"].items():
        lines += ["", f"last lines of {key}:", tail]
    return "\n".join(lines)
