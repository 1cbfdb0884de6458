"""Training the perception model from bags (`m2vae train`): observations, the two training stages, export."""
