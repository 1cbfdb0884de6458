"""The simulated demo for a ROS 2 install:

  ros2 launch m2vae_fusion sim.launch.py [simulator:=gazebo|embedded] [world:=FILE] [robots:=N]
      [rviz:=true|false] [use_sim_time:=true|false] [headless:=true|false] [duration:=SECONDS]

The nodes, their parameters and remaps come from m2vae_fusion.bringup.description.sim_description
(config/graph_sim.yaml): the same description `m2vae launch sim` runs on machines without ros2 launch.
This file only declares the arguments and turns each NodeSpec into a launch action.

Ending: the scoreboard exiting with status 0 (after `duration` simulated seconds) shuts the launch
down normally, as do closing rviz2 or Gazebo; any other process that exits, or one of those with a
non-zero status, fails the launch (status 1) with a message naming it. Spawners may exit 0.
"""

from __future__ import annotations

ARGUMENTS = {  # name -> description; defaults are worked out in generate_launch_description
    "simulator": "gazebo (needs ros_gz_sim) or embedded (the project's MuJoCo simulator, one process per robot)",
    "world": "world SDF; relative names are also looked up in the package's worlds/ (default: by the number of robots)",
    "robots": "number of robots, in namespaces robot1..N",
    "rviz": "start rviz2 with config/m2vae.rviz (when installed)",
    "use_sim_time": "nodes follow /clock from the simulator",
    "headless": "no viz nodes, no rviz2, Gazebo without its GUI",
    "duration": "simulated seconds until the scoreboard ends the demo; 0 = until stopped",
}
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def flag(name: str, text: str) -> bool:
    if text.strip().lower() in TRUE + FALSE:
        return text.strip().lower() in TRUE
    raise ValueError(f"launch argument {name}:={text!r} must be true or false")


class NodeExited(RuntimeError):
    """A node that must keep running exited: raising it fails the launch (ros2 launch returns 1)."""


def exit_handler(spec):
    """What happens when `spec`'s process exits: nothing, a normal shutdown, or a failed launch."""
    from launch.actions import Shutdown

    def on_exit(event, context):
        code = event.returncode
        if code == 0 and spec.ends_launch:
            return [Shutdown(reason=f"{spec.key} finished")]
        if code == 0 and spec.one_shot:
            return None
        raise NodeExited(f"node {spec.key} exited with status {code}")

    return on_exit


def action(spec):
    from launch.actions import ExecuteProcess
    from launch_ros.actions import Node

    env = dict(spec.env) or None
    if not spec.ros:
        return ExecuteProcess(cmd=[spec.executable, *spec.arguments], name=spec.name, output=spec.output, additional_env=env)
    return Node(
        package=spec.package,
        executable=spec.executable,
        name=spec.name,
        namespace=spec.namespace or None,
        parameters=[*(str(path) for path in spec.params_files), dict(spec.parameters)],
        remappings=list(spec.remaps),
        arguments=list(spec.arguments),
        output=spec.output,
        additional_env=env,
    )


def launch_setup(context):
    from launch.actions import LogInfo, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.substitutions import LaunchConfiguration

    from m2vae_fusion.bringup.description import sim_description

    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    try:
        robots = int(value["robots"])
        duration = float(value["duration"])
    except ValueError:
        raise ValueError(f"launch arguments robots:={value['robots']!r} and duration:={value['duration']!r} must be numbers") from None
    description = sim_description(
        robots=robots,
        world=value["world"] or None,
        simulator=value["simulator"],
        headless=flag("headless", value["headless"]),
        rviz=flag("rviz", value["rviz"]),
        use_sim_time=flag("use_sim_time", value["use_sim_time"]),
        duration_s=duration,
    )
    actions = [LogInfo(msg=note) for note in description.notes]
    for spec in description.nodes:
        process = action(spec)
        actions += [process, RegisterEventHandler(OnProcessExit(target_action=process, on_exit=exit_handler(spec)))]
    return actions


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from m2vae_fusion.bringup.description import SIMULATORS, default_simulator

    defaults = {
        "simulator": default_simulator(), "world": "", "robots": "1", "rviz": "true",
        "use_sim_time": "true", "headless": "false", "duration": "0",
    }
    declared = [
        DeclareLaunchArgument(name, default_value=defaults[name], description=text, **({"choices": list(SIMULATORS)} if name == "simulator" else {}))
        for name, text in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=launch_setup)])
