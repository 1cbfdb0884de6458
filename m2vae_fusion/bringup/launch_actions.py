"""NodeSpecs (m2vae_fusion.bringup.description) as ROS 2 launch actions, for the launch files in
launch/. The launch packages are imported inside the functions: the rest of bringup, and
`m2vae launch`, run on machines without them.

What a process's exit does (`exit_handler`): during a shutdown (Ctrl-C, or after a node that ends
the launch finished) nothing, every exit is expected; a one_shot node (a spawner) may exit 0; any
other exit with status 0 shuts the launch down normally: our nodes end with 0 only when asked to
stop (SIGINT / SIGTERM) or, marked ends_launch, when their job is done, and on a terminal's Ctrl-C a
node can end before launch has handled the signal itself, so a clean stop must not read as a
failure. Any other exit (a status other than 0, or killed by a signal) fails the launch: `ros2
launch` logs one message naming the node and returns 1, and the rest are shut down.

Building the actions also makes the launch's asyncio signal processes without reaping them
(bringup/child_signals.py), so a node that ends on the terminal's Ctrl-C is not reported as died.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from m2vae_fusion.bringup.child_signals import signal_without_reaping
from m2vae_fusion.bringup.description import Description, NodeSpec

TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class NodeExited(RuntimeError):
    """A node that must keep running exited: raising it fails the launch (ros2 launch returns 1)."""


def flag(name: str, text: str) -> bool:
    """A launch argument read as a boolean; anything but the usual spellings is an error naming it."""
    if text.strip().lower() in TRUE + FALSE:
        return text.strip().lower() in TRUE
    raise ValueError(f"launch argument {name}:={text!r} must be true or false")


def argument_values(context: Any, names: Mapping[str, str] | list[str]) -> dict[str, str]:
    """The launch arguments' values as text."""
    from launch.substitutions import LaunchConfiguration

    return {name: LaunchConfiguration(name).perform(context) for name in names}


def declare(arguments: Mapping[str, str], defaults: Mapping[str, str], choices: Mapping[str, list[str]] | None = None) -> list:
    """DeclareLaunchArgument for every name -> description, with its default (and choices)."""
    from launch.actions import DeclareLaunchArgument

    choices = choices or {}
    return [
        DeclareLaunchArgument(
            name, default_value=defaults[name], description=text, **({"choices": choices[name]} if name in choices else {})
        )
        for name, text in arguments.items()
    ]


def exit_handler(spec: NodeSpec) -> Callable[[Any, Any], list | None]:
    """What happens when `spec`'s process exits (see the module docstring)."""
    from launch.actions import Shutdown

    def on_exit(event: Any, context: Any) -> list | None:
        if context.is_shutdown:
            return None  # stopped by the shutdown itself (Ctrl-C, the scoreboard done): expected
        code = event.returncode
        if code == 0 and spec.one_shot:
            return None
        if code == 0:
            return [Shutdown(reason=f"{spec.key} finished" if spec.ends_launch else f"{spec.key} was stopped (status 0)")]
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        raise NodeExited(f"node {spec.key} {how} (its log: ros2 launch's log folder, or the lines above)")

    return on_exit


def process_action(spec: NodeSpec) -> Any:
    """A launch_ros Node (or a plain ExecuteProcess for a non-ROS program), labelled by its role:
    the output's `[<label>-N]` is `robot1.camera_encoder`, not the shared executable `encoder`."""
    from launch.actions import ExecuteProcess
    from launch_ros.actions import Node

    env = dict(spec.env) or None
    label = spec.key.replace("/", ".")
    if not spec.ros:
        return ExecuteProcess(cmd=[spec.executable, *spec.arguments], name=label, output=spec.output, additional_env=env)
    return Node(
        package=spec.package,
        executable=spec.executable,
        exec_name=label,
        name=spec.name,
        namespace=spec.namespace or None,
        parameters=[*(str(path) for path in spec.params_files), dict(spec.parameters)],
        remappings=list(spec.remaps),
        arguments=list(spec.arguments),
        output=spec.output,
        additional_env=env,
    )


def description_actions(description: Description) -> list:
    """Every node of the description as a launch action with its exit handler, after its notes."""
    from launch.actions import LogInfo, RegisterEventHandler
    from launch.event_handlers import OnProcessExit

    signal_without_reaping()
    actions: list = [LogInfo(msg=note) for note in description.notes]
    for spec in description.nodes:
        process = process_action(spec)
        actions += [process, RegisterEventHandler(OnProcessExit(target_action=process, on_exit=exit_handler(spec)))]
    return actions
