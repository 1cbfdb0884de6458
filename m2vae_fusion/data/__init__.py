"""Data sets: MoG, MNIST-E, simulator captures, rosbag readers and writers."""
