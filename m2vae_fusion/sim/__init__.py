"""SDF loading and the embedded physics and rendering backend."""
