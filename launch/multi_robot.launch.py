"""Several robots sharing latents: sim.launch.py with robots:=2 by default.

  ros2 launch m2vae_fusion multi_robot.launch.py [robots:=N] [simulator:=...] [world:=...] [rviz:=...]
      [fleet_key:=FILE]

Every other argument of sim.launch.py passes through (fleet_key:=FILE: every robot signs and verifies
the latents it shares with that fleet key file). Each robot runs in its namespace robotK with its
own sensors, encoders and fusion node; the fusion nodes exchange latents on /shared/latents.
"""

from __future__ import annotations

from pathlib import Path


def generate_launch_description():
    from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration

    from launch import LaunchDescription

    sim = Path(__file__).resolve().with_name("sim.launch.py")
    return LaunchDescription(
        [
            DeclareLaunchArgument("robots", default_value="2", description="number of robots, in namespaces robot1..N"),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(str(sim)), launch_arguments={"robots": LaunchConfiguration("robots")}.items()
            ),
        ]
    )
