"""Deployment: export a trained model to ONNX, TorchScript, torch.export or safetensors,
each artefact checked against PyTorch before it is written (``vistra export``).

- :mod:`.model`: load a config + checkpoint; the one-tensor-in, one-tensor-out wrapper;
- :mod:`.export`: the exporters and the atomic write;
- :mod:`.verify`: run the artefact back and compare it with PyTorch.
"""

from vistra.deployment.export import FORMATS, ExportOptions, export
from vistra.deployment.model import ExportError, ExportWrapper, LoadedModel, load_model

__all__ = [
    "FORMATS",
    "ExportError",
    "ExportOptions",
    "ExportWrapper",
    "LoadedModel",
    "export",
    "load_model",
]
