"""m2vae_fusion: multi-modal object perception with a jointly trained multi-modal VAE.

Korthals et al., "Jointly Trained Variational Autoencoder for Multi-Modal Sensor Fusion", 2019.
`core` holds the maths (torch + numpy only), `nodes` the thin ROS 2 adapters, `cli` the
`m2vae` command.
"""

__version__ = "0.1.0"
