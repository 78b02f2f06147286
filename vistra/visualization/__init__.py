"""Visualization: backends (local files, TensorBoard), prediction overlays, training curves.

Importing this package registers ``LocalVisBackend``/``TensorboardVisBackend`` in
VISBACKENDS and the visualizer names (``Visualizer``, ``UniversalVisualizer``,
``SegLocalVisualizer``, ...) in VISUALIZERS.
"""

from .backends import BaseVisBackend, LocalVisBackend, TensorboardVisBackend
from .curves import plot_training_curves

# the trackers import their libraries only when a config names them
from .trackers import MLflowVisBackend, WandbVisBackend
from .visualizer import Visualizer

__all__ = [
    "BaseVisBackend",
    "LocalVisBackend",
    "MLflowVisBackend",
    "TensorboardVisBackend",
    "Visualizer",
    "WandbVisBackend",
    "plot_training_curves",
]
