"""The M2VAE maths: torch + numpy only, never rclpy."""
