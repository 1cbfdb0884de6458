"""Bringup: the simulated demo's node graph as data (description) and the launcher that runs it
without ROS 2 launch (launcher). launch/sim.launch.py turns the same description into launch actions."""
