"""Bringup: the project's node graphs as plain Python (graph, from the NodeSpecs of description, the
world in worlds and the Gazebo files in gazebo) and the launcher that runs a graph without ROS 2
launch (launcher). The launch files turn the same descriptions into launch actions."""
