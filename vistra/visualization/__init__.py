"""Visualization: backends (local files, TensorBoard), prediction overlays, training curves.

Importing this package registers ``LocalVisBackend``/``TensorboardVisBackend`` in
VISBACKENDS and the visualizer names (``Visualizer``, ``UniversalVisualizer``,
``SegLocalVisualizer``, ...) in VISUALIZERS.
"""

from .backends import BaseVisBackend, LocalVisBackend, TensorboardVisBackend
from .curves import plot_training_curves
from .visualizer import Visualizer

__all__ = [
    "BaseVisBackend",
    "LocalVisBackend",
    "TensorboardVisBackend",
    "Visualizer",
    "plot_training_curves",
]
