"""The simulated demo for a ROS 2 install:

  ros2 launch m2vae_fusion sim.launch.py [simulator:=gazebo|embedded] [world:=FILE] [robots:=N]
      [rviz:=true|false] [use_sim_time:=true|false] [headless:=true|false] [duration:=SECONDS]
      [fleet_key:=FILE] [model:=FOLDER]

The nodes, their parameters and remaps come from m2vae_fusion.bringup.graph.sim_description: the same
graph `m2vae launch sim` runs on machines without ros2 launch. This file only declares the arguments
and turns the graph into launch actions (m2vae_fusion.bringup.launch_actions).

Ending: the scoreboard exiting with status 0 (after `duration` simulated seconds) shuts the launch
down normally, as do closing rviz2 or Gazebo, and Ctrl-C: every node then stops on the SIGINT ros2
launch sends it and the launch returns 0, as it does when any node is stopped in order (status 0).
Before a shutdown, a process that crashes (a non-zero status, or killed by a signal) fails the launch
(status 1) with one message naming it, and the rest are shut down. Each process is labelled by its role (`[robot1.fusion-5]`).
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
    "fleet_key": "fleet key file (docs/robustness.md): every robot's fusion node signs the latents it shares and drops those not signed with one of its keys; empty: off",
    "model": "perception model folder for every encoder, fusion and viz node (e.g. one trained on Gazebo recordings: docs/gazebo.md); empty: the shipped model",
}


def launch_setup(context):
    from m2vae_fusion.bringup.graph import sim_description
    from m2vae_fusion.bringup.launch_actions import argument_values, description_actions, flag

    value = argument_values(context, ARGUMENTS)
    try:
        robots = int(value["robots"])
        duration = float(value["duration"])
    except ValueError:
        raise ValueError(
            f"launch arguments robots:={value['robots']!r} and duration:={value['duration']!r} must be numbers"
        ) from None
    return description_actions(
        sim_description(
            robots=robots,
            world=value["world"] or None,
            simulator=value["simulator"],
            headless=flag("headless", value["headless"]),
            rviz=flag("rviz", value["rviz"]),
            use_sim_time=flag("use_sim_time", value["use_sim_time"]),
            duration_s=duration,
            fleet_key=value["fleet_key"] or None,
            model=value["model"] or None,
        )
    )


def generate_launch_description():
    from launch.actions import OpaqueFunction

    from launch import LaunchDescription
    from m2vae_fusion.bringup.description import SIMULATORS, default_simulator
    from m2vae_fusion.bringup.launch_actions import declare

    defaults = {
        "simulator": default_simulator(),
        "world": "",
        "robots": "1",
        "rviz": "true",
        "use_sim_time": "true",
        "headless": "false",
        "duration": "0",
        "fleet_key": "",
        "model": "",
    }
    return LaunchDescription(
        [*declare(ARGUMENTS, defaults, {"simulator": list(SIMULATORS)}), OpaqueFunction(function=launch_setup)]
    )
