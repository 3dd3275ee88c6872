"""Module classes (``convcore.nn.Conv2d`` ...); defined in convcore.api.nn."""
from convcore.api.nn import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d"]
