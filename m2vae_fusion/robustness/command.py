"""`m2vae fuzz`: adversarial messages against the running node graph.

Starts the simulated robots' node graph headless (bringup.graph.sim_description, each node its
own process) on a fresh ROS_DOMAIN_ID with loopback-only DDS, so no other ROS 2 system hears the
garbage. Once every encoder and fusion node reports on /diagnostics, each fusion node publishes its
beliefs in map (it takes latents in map only) and each robot's sensors have sent a scan, an image and
an IR reading to start from, it publishes --messages adversarial messages,
drawn evenly and seeded from CASES, onto the robots' `scan`, `camera/image_raw` and `ir/scan` and
onto /shared/latents, while the graph keeps running on its simulated sensors. Each case breaks one
thing (NaN / negative ranges, empty and huge scans, wrong image encoding / step / size, zero-size and
huge images, unknown frames, out-of-order and future stamps; latents of the wrong size, NaN/inf,
absurd magnitudes, another model, unknown modalities, echoes, other frames, future stamps, replays,
floods from one robot id and from many made-up ones) and names the counter on /diagnostics that the
receiving nodes must raise for it.

Fleet key: unless --no-fleet-key, the graph runs with a fleet key made for the run (a throwaway key
file in the log folder, `fleet_key` of every fusion node, as `m2vae launch --fleet-key`): every latent
case is signed so it still reaches the check it is for, and four more cases test the signature itself:
unsigned latents, latents signed with a key the file does not list, forged latents (a field or the
signature changed after signing) and replays of an accepted latent with a new sequence number; exact
replays of a signed latent are refused as duplicates. --no-fleet-key runs the graph as shipped
(latents unsigned) without those four.

Flow control: the nodes publish their counters every FAST_DIAGNOSTICS_S during the run; a message
goes out only while each node it is for has fewer than WINDOW of the fuzz's messages not yet
counted, so the sensor topics' best-effort queues (depth 5) never overflow and a missing count is a
node's fault, not the transport's.

Goals, each checked and printed, exit status 1 when one is missed:
- crashes: every node process still runs at the end;
- non-finite beliefs: every number of every ObjectBelief received (position, mean, log_var, class
  and attribute probabilities) is finite;
- every rejection counted: per node and counter, the rise during the run is at least what was sent
  for it. Floods may be legitimately accepted (a token bucket's burst, the first
  max_foreign_robots made-up robots), so for them `dropped latent: rate | robots` plus
  `accepted latents` must cover what was sent. Sensor topics are best effort: on a machine too
  busy for a node to keep up, a message can be lost before it reaches the node. Such a loss shows
  as an encoder's `received <input>` falling behind what this process (subscribed to the same
  topic) or a sibling encoder (all three take the scans) received; that many missing counts of
  the input are put down to transport, not the node. Latents go reliably: no allowance.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from m2vae_fusion.robustness.campaign import run_fuzz
from m2vae_fusion.robustness.report import table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0].replace("`m2vae fuzz`: ", "").capitalize() + " " + __doc__.split("\n\n")[1]
    parser.add_argument("--messages", type=int, default=1000, metavar="N", help="adversarial messages to send (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cases, their order and their contents (default: 0)")
    parser.add_argument("--robots", type=int, default=1, help="simulated robots in the graph, sharing latents (default: 1)")
    parser.add_argument(
        "--no-fleet-key",
        action="store_true",
        help="run the graph without a fleet key (latents unsigned, the default configuration) and leave out the signature cases",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    parser.add_argument(
        "--log-dir", type=Path, help="folder for the nodes' logs (default: a temporary folder, removed when the goals are met)"
    )


def run(args: argparse.Namespace) -> int:
    from m2vae_fusion.core.atomic_file import write_text_atomic

    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="m2vae_fuzz_"))
    results = run_fuzz(args.messages, args.seed, args.robots, log_dir, fleet_key=not args.no_fleet_key)
    print(table(results))
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2))
    if results["met"] and args.log_dir is None:
        shutil.rmtree(log_dir, ignore_errors=True)
    elif not results["met"]:
        print(f"node logs: {log_dir}")
    return 0 if results["met"] else 1
