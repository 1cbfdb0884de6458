"""`m2vae bench ...`: every speed and memory figure as a ratio measured side by side in one run."""
