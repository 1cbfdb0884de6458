"""rclpy nodes: parameters + message conversion + one call into core, nothing more."""
