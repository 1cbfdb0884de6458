"""The nodes' parameter tables are the one source of defaults, types and ranges: docs/parameters.md is
generated from them, config/*.yaml hold only valid overrides, and over real rclpy a node refuses an
out-of-range value at start-up (its own message) and at run time (rclpy's, from the descriptor)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import yaml

from m2vae_fusion.bringup import parameter_docs
from m2vae_fusion.model.beliefs import BeliefStoreConfig
from m2vae_fusion.resources import config_path
from m2vae_fusion.ros_interface.parameters import ParameterError, integer, number, strings, text

# params file -> the node whose table its keys belong to
PARAMS_FILES = {
    "encoders.yaml": "encoder",
    "fusion.yaml": "fusion",
    "viz.yaml": "viz",
    "explorer.yaml": "explorer",
    "sim.yaml": "sim",
    "scoreboard.yaml": "scoreboard",
}


@pytest.fixture(scope="module")
def tables():
    return parameter_docs.node_tables()


def test_committed_document_is_the_generated_one(tables) -> None:
    assert parameter_docs.DOCUMENT.read_text() == parameter_docs.render(tables), "run `m2vae docs parameters`"


def test_check_names_an_out_of_date_file(tmp_path: Path, capsys) -> None:
    stale = tmp_path / "parameters.md"
    stale.write_text("# Node parameters\n")
    assert parameter_docs.run(argparse.Namespace(check=True, out=stale)) == 1
    assert str(stale) in capsys.readouterr().err
    assert parameter_docs.run(argparse.Namespace(check=False, out=stale)) == 0
    assert parameter_docs.run(argparse.Namespace(check=True, out=stale)) == 0


def test_document_rows_show_type_default_and_range(tables) -> None:
    document = parameter_docs.render(tables)
    assert "| `max_objects` | integer | `3` | >= 1 |" in document
    assert "| `gate` | double | `0.1` | > 0 |" in document
    assert "| `model` | string | *start-up* |  |" in document
    assert '| `modality` | string | `""` |  | the sensor this node encodes: camera \\| lidar \\| ir |' in document


def test_fusion_takes_the_store_defaults_from_belief_store_config(tables) -> None:
    fusion = tables["fusion"]
    names = {
        "gate": "gate",
        "forget_after_s": "forget_after_s",
        "latent_rate_hz": "latent_rate_hz",
        "foreign_rate_limit_hz": "foreign_rate_hz",
        "reshare_after_s": "reshare_after_s",
    }
    assert {f.name for f in dataclasses.fields(BeliefStoreConfig)} == set(names.values())
    for parameter, field in names.items():
        assert fusion[parameter].default == getattr(BeliefStoreConfig(), field)


@pytest.mark.parametrize("file", sorted(PARAMS_FILES))
def test_params_file_holds_only_known_valid_overrides(file: str, tables) -> None:
    path = config_path(file)
    assert "docs/parameters.md" in path.read_text(), f"{file} must say that the defaults live in the code and docs/parameters.md"
    table = tables[PARAMS_FILES[file]]
    for block in yaml.safe_load(path.read_text()).values():
        for name, value in (block["ros__parameters"] or {}).items():
            assert name in table, f"{file}: {name!r} is no parameter of {PARAMS_FILES[file]}"
            table[name].validate(name, value)


@pytest.mark.parametrize(
    "entry, value, message",
    [
        (number(1.0, "d", positive=True), 0.0, "must be > 0, got 0.0"),
        (number(1.0, "d"), -1, "must be >= 0, got -1"),
        (number(0.5, "d", maximum=1.0), 1.5, "must be <= 1, got 1.5"),
        (number(1.0, "d"), float("nan"), "must be a finite number"),
        (number(1.0, "d"), True, "must be of type double"),
        (integer(3, "d", minimum=1), 0, "must be >= 1, got 0"),
        (integer(3, "d", minimum=1), 2.0, "must be of type integer"),
        (text("a", "d"), 3, "must be of type string"),
        (strings(["a"], "d"), ["a", 1], "must be of type string array"),
    ],
)
def test_validate_names_the_parameter_and_the_bound(entry, value, message) -> None:
    with pytest.raises(ParameterError, match=f"parameter 'p' {message}"):
        entry.validate("p", value)


def test_descriptor_carries_type_range_and_description() -> None:
    from rcl_interfaces.msg import ParameterType

    described = number(1.0, "a rate", positive=True, maximum=5.0).descriptor()
    assert (described.type, described.description, described.additional_constraints) == (
        ParameterType.PARAMETER_DOUBLE,
        "a rate",
        "> 0, <= 5",
    )
    assert 0.0 < described.floating_point_range[0].from_value < 1e-300 and described.floating_point_range[0].to_value == 5.0
    counted = integer(3, "a count", minimum=1).descriptor()
    assert (counted.integer_range[0].from_value, counted.integer_range[0].step) == (1, 1) and not counted.floating_point_range
    assert not text("x", "a topic").descriptor().integer_range


# ---------------------------------------------------------------- over real rclpy


def explorer_node(args: list[str]):
    """An ExplorerNode (no model needed) in a fresh rclpy session with `args` as its command line."""
    import rclpy
    from dds_probe import rclpy_session

    from m2vae_fusion.nodes.explorer import ExplorerNode

    session = rclpy_session(["explorer", "--ros-args", *args])
    session.__enter__()
    try:
        node = ExplorerNode()
    except BaseException:
        session.__exit__(None, None, None)
        raise
    return rclpy, session, node


def test_node_refuses_an_out_of_range_value_set_at_run_time(ros_env) -> None:
    rclpy, session, node = explorer_node(["-p", "dwell_s:=2"])  # an integer for a double is taken at start
    try:
        from rclpy.parameter import Parameter

        assert node.get_parameter("dwell_s").value == 2.0
        refused = node.set_parameters([Parameter("view_distance", value=-0.5)])[0]
        assert not refused.successful and "view_distance" in refused.reason and node.get_parameter("view_distance").value == 0.2
        refused = node.set_parameters([Parameter("min_sightings", value=0)])[0]
        assert not refused.successful and "min_sightings" in refused.reason
        assert node.set_parameters([Parameter("dwell_s", value=3.0)])[0].successful  # within its range
        described = node.describe_parameters(["view_distance"])[0]
        assert described.description.startswith("robot centre to object centre") and described.additional_constraints == "> 0"
        assert described.floating_point_range[0].to_value > 1e300 and described.floating_point_range[0].from_value > 0.0
    finally:
        node.destroy_node()
        session.__exit__(None, None, None)
    del rclpy


def test_params_file_override_outside_the_range_fails_at_start(ros_env, tmp_path: Path) -> None:
    overrides = tmp_path / "explorer.yaml"
    overrides.write_text("/**:\n  ros__parameters:\n    min_sightings: 0\n")
    with pytest.raises(ParameterError, match="parameter 'min_sightings' must be >= 1, got 0"):
        explorer_node(["--params-file", str(overrides)])
    overrides.write_text("/**:\n  ros__parameters:\n    linear_speed: -0.1\n")
    with pytest.raises(ParameterError, match="parameter 'linear_speed' must be > 0, got -0.1"):
        explorer_node(["--params-file", str(overrides)])
