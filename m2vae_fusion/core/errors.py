"""The exceptions core raises: each names the offending input."""


class M2VAEError(Exception):
    """Base class of every error raised by m2vae_fusion.core."""


class ConfigError(M2VAEError, ValueError):
    """A configuration value or file is invalid."""


class CheckpointError(M2VAEError):
    """A checkpoint is missing, corrupted, or does not match the requested configuration."""


class DataError(M2VAEError):
    """A data set or batch is missing, malformed, or does not match the model."""


class TrainingError(M2VAEError):
    """Training diverged: the loss became NaN or infinite."""
