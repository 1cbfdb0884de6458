"""From sensor readings to per-object modality features (numpy only, no torch, no ROS).

Shared by training (readings from bags) and the live encoder nodes: detect object candidates in
the LiDAR scan (lidar_objects), cut out each sensor's view of one object (features), convert
sensor_msgs/Image fields without cv_bridge (image_encodings), and move points between frames.
"""
