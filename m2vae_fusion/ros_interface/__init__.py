"""What every node shares around rclpy: the process entry, the run loop and parameters, stop signals, diagnostics."""
