"""The perception nodes on a robot that already publishes its sensors (a real AMiRo, another
simulator, a bag being played):

  ros2 launch m2vae_fusion perception.launch.py namespace:=robot1 model:=models/mine
      [image_topic:=camera/image_raw] [image_transport:=raw|compressed] [camera_info_topic:=...]
      [scan_topic:=scan] [ir_topic:=ir/scan] [frame_prefix:=robot1/] [robot_id:=robot1]
      [share_latents:=true|false] [fleet_key:=FILE] [headless:=true|false] [rviz:=true|false]
      [use_sim_time:=false]

Starts the camera, LiDAR and IR encoders and the fusion node in `namespace`, plus viz and rviz2
(when installed) unless headless; the graph is m2vae_fusion.bringup.graph.perception_description.
Topic names without a leading '/' resolve in the namespace. An argument left empty keeps the value
of the node's overrides in config/ (encoders.yaml, fusion.yaml) or else its default (the node's
parameter table, listed in docs/parameters.md). The robot's
own driver publishes the sensors and the odom -> base_link -> sensor transforms; nothing here moves
it. Ending: Ctrl-C stops every node and the launch returns 0 (so does a node stopped in order, status
0); a node that crashes before that fails the launch (status 1) with one message naming it, and the
rest are shut down.
"""

from __future__ import annotations

ARGUMENTS = {  # name -> description; "" = the node's config file decides
    "namespace": "the robot's namespace (robot1); empty: the root namespace",
    "model": "perception model folder (with perception_model.json); empty: the package's shipped AMiRo model",
    "image_topic": "camera image topic (sensor_msgs/Image); empty: camera/image_raw",
    "image_transport": "raw, or compressed: sensor_msgs/CompressedImage (JPEG/PNG) on <image_topic>/compressed; empty: raw",
    "camera_info_topic": "camera intrinsics (sensor_msgs/CameraInfo); empty: camera/camera_info",
    "scan_topic": "2-D LiDAR scan with intensities (sensor_msgs/LaserScan); empty: scan",
    "ir_topic": "IR / reflectance ring (sensor_msgs/LaserScan); empty: ir/scan",
    "frame_prefix": "prefix of the robot's tf frames (robot1/ for robot1/base_link); empty: the namespace plus '/'",
    "robot_id": "this robot's id in shared latents and beliefs; empty: the namespace, else the host name",
    "share_latents": "true: publish own latents on /shared/latents and fuse the other robots'; false: keep to itself; empty: the fusion node's default (true)",
    "fleet_key": "fleet key file (docs/robustness.md): sign the latents shared and drop those not signed with one of its keys; empty: off",
    "headless": "true: no viz node, no rviz2",
    "rviz": "start rviz2 with config/m2vae.rviz pointed at this robot's topics (when installed)",
    "use_sim_time": "nodes follow /clock (a simulator or `ros2 bag play --clock`)",
}
DEFAULTS = {name: "" for name in ARGUMENTS} | {"headless": "false", "rviz": "true", "use_sim_time": "false"}


def launch_setup(context):
    from m2vae_fusion.bringup.graph import perception_description
    from m2vae_fusion.bringup.launch_actions import argument_values, description_actions, flag

    value = argument_values(context, ARGUMENTS)
    given = {name: value[name] or None for name in ARGUMENTS}
    return description_actions(
        perception_description(
            value["namespace"],
            image_topic=given["image_topic"],
            image_transport=given["image_transport"],
            camera_info_topic=given["camera_info_topic"],
            scan_topic=given["scan_topic"],
            ir_topic=given["ir_topic"],
            frame_prefix=given["frame_prefix"],
            model=given["model"],
            robot_id=given["robot_id"],
            share_latents=None if not value["share_latents"] else flag("share_latents", value["share_latents"]),
            fleet_key=given["fleet_key"],
            headless=flag("headless", value["headless"]),
            rviz=flag("rviz", value["rviz"]),
            use_sim_time=flag("use_sim_time", value["use_sim_time"]),
        )
    )


def generate_launch_description():
    from launch.actions import OpaqueFunction

    from launch import LaunchDescription
    from m2vae_fusion.bringup.launch_actions import declare

    return LaunchDescription(
        [*declare(ARGUMENTS, DEFAULTS, {"image_transport": ["", "raw", "compressed"]}), OpaqueFunction(function=launch_setup)]
    )
