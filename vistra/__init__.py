"""vistra: train and test vision models from OpenMMLab-style configs."""

__version__ = "0.1.0"
