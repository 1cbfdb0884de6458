"""`m2vae train`: the perception model from bags (training.train), as a command.

Its arguments load without torch (`m2vae --help` builds every parser); the training modules load
when it runs. Launched by torchrun (`torchrun --nproc-per-node 2 -m m2vae_fusion.cli train ...`)
every stage trains with DDP; rank 0 reads the bags first and fills the observation cache, which
the other ranks then read, and rank 0 alone prints and exports.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

STAGES = ("all", "preprocessors", "fusion")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "stage",
        nargs="?",
        choices=STAGES,
        default="all",
        help="preprocessors: the beta-VAE of each sensor; fusion: the M2VAE and classifier on their features "
        "(needs the preprocessors in --out); all: both (default)",
    )
    parser.add_argument(
        "--bag",
        type=Path,
        nargs="+",
        required=True,
        metavar="BAG",
        help="bags to train on (from `m2vae sim collect`, `m2vae record` or `ros2 bag record`)",
    )
    parser.add_argument("--out", type=Path, required=True, help="model folder: checkpoints, metrics logs, perception_model.json")
    parser.add_argument("--config", type=Path, help="perception model YAML (default: config/perception.yaml)")
    parser.add_argument(
        "--labels",
        type=Path,
        help="label file (YAML): 'classes' maps each of your classes to its attribute values (default: the paper's eight, "
        "config/labels.yaml); 'relabel' maps labels of the bag's ground truth to those classes; 'objects' lists labelled "
        "positions in the map frame for a bag without ground truth (default: the simulator's ground_truth/objects topic)",
    )
    parser.add_argument("--namespace", default="", help="the robot's namespace in the bag, e.g. /robot1 (default: none)")
    parser.add_argument("--epochs-preprocessors", type=int, help="override the beta-VAEs' epochs (quick runs)")
    parser.add_argument(
        "--epochs-fusion", type=int, help="override the M2VAE's epochs (quick runs); the re-encoding warm-up scales with it"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="processes for the three beta-VAEs (default: 2; under torchrun they train one after the other)",
    )
    parser.add_argument(
        "--no-resume", action="store_true", help="retrain from scratch instead of continuing the checkpoints in --out"
    )
    parser.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="afterwards, copy the model for deployment (weights and manifest, no optimiser state) to DIR",
    )


def run(args: argparse.Namespace) -> int:
    from m2vae_fusion.core.training import distributed
    from m2vae_fusion.data.bag_frames import TopicNames, labelled_objects
    from m2vae_fusion.model.config import load_stack_config
    from m2vae_fusion.perception.labels import Labelling, default_labels, read_labelling
    from m2vae_fusion.training.dataset import load_observations
    from m2vae_fusion.training.train import MANIFEST, export_model, train_fusion, train_preprocessors

    ranks = distributed()
    say = print if ranks.main else (lambda *args, **kwargs: None)
    config = load_stack_config(args.config).with_epochs(args.epochs_preprocessors, args.epochs_fusion)
    labelling, entries = read_labelling(args.labels) if args.labels else (Labelling(default_labels()), None)
    labels = labelled_objects(entries, labelling.space, str(args.labels)) if entries is not None else None
    topics = TopicNames.for_namespace(args.namespace)
    # under torchrun rank 0 extracts the observations into the cache first: the bags are read once
    if ranks.main:
        observations = load_observations(args.bag, config.perception, args.out / "cache", labels, topics, labelling)
    ranks.barrier()
    if not ranks.main:
        observations = load_observations(args.bag, config.perception, args.out / "cache", labels, topics, labelling)
    complete = observations.complete()
    say(
        f"{len(observations)} object views in {len(args.bag)} bag(s); seen by camera {int(observations.seen('camera').sum())}, "
        f"LiDAR {int(observations.seen('lidar').sum())}, IR {int(observations.seen('ir').sum())}; {int(complete.sum())} labelled and complete",
        flush=True,
    )
    progress = sys.stderr.isatty()
    if args.stage in ("all", "preprocessors"):
        records = train_preprocessors(
            config, observations, args.out, resume=not args.no_resume, progress=progress, jobs=args.jobs, log=say
        )
        for m, record in records.items():
            loss = record["final"].get("loss")  # none when the checkpoint in --out had finished already
            say(
                f"  {m}: {record['samples']} views, "
                + (f"final loss {loss:.3f}" if loss is not None else "already trained (resumed a finished checkpoint)")
            )
    if args.stage in ("all", "fusion"):
        manifest = train_fusion(
            config,
            observations.subset(complete),
            args.out,
            labelling.space,
            resume=not args.no_resume,
            progress=progress,
            log=say,
        )
        say(f"perception model {manifest['model_id']}: {args.out / MANIFEST}")
    if args.export and ranks.main:
        manifest = export_model(args.out, args.export)
        say(f"exported {manifest['model_id']} to {args.export}")
    return 0
