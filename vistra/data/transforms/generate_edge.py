"""``GenerateEdge``: a boundary map from the semantic label map (MMSegmentation 1.x), used
by PIDNet's boundary loss (originally from `CE2P <https://arxiv.org/abs/1809.05996>`_)."""

from __future__ import annotations

import numpy as np

from vistra.data.transforms.base import BaseTransform
from vistra.registry import TRANSFORMS


def _dilate(mask: np.ndarray, size: int) -> np.ndarray:
    """Binary dilation by a ``size`` x ``size`` square anchored at ``size // 2``, pixels
    outside the image taking no part (OpenCV's ``cv2.dilate`` with a rectangular kernel).
    The square is separable: a running maximum along each axis in turn."""
    if size <= 1:
        return mask.copy()
    before, after = size // 2, size - 1 - size // 2
    out = mask
    for axis in (0, 1):
        n = out.shape[axis]
        padded = np.pad(out, [(before, after) if a == axis else (0, 0) for a in range(2)])
        shifted = [np.take(padded, range(k, k + n), axis=axis) for k in range(size)]
        out = np.maximum.reduce(shifted)
    return out


@TRANSFORMS.register_module()
class GenerateEdge(BaseTransform):
    """Mark pixels whose label differs from a neighbour's (below, left, and the two
    diagonals, neither being ``ignore_index``), widened to ``edge_width``.

    Required keys: ``img_shape``, ``gt_seg_map``. Added keys: ``gt_edge_map`` (uint8 0/1,
    ``PackSegInputs`` packs it), ``edge_width``.
    """

    def __init__(self, edge_width: int = 3, ignore_index: int = 255) -> None:
        super().__init__()
        if not isinstance(edge_width, int) or edge_width < 1:
            raise ValueError(f"GenerateEdge edge_width must be a positive int, got {edge_width!r}")
        self.edge_width, self.ignore_index = edge_width, ignore_index

    def transform(self, results: dict) -> dict:
        if "gt_seg_map" not in results:
            raise KeyError(
                "GenerateEdge needs 'gt_seg_map': put LoadAnnotations before it in the pipeline"
            )
        h, w = results["img_shape"][:2]
        seg = np.asarray(results["gt_seg_map"])
        edge = np.zeros((h, w), dtype=np.uint8)
        ig = self.ignore_index

        def mark(dst: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
            dst[(a != b) & (a != ig) & (b != ig)] = 1

        mark(edge[1:, :], seg[1:h, :], seg[: h - 1, :])  # pixel vs the one above
        mark(edge[:, : w - 1], seg[:, : w - 1], seg[:, 1:w])  # vs the one to the right
        mark(edge[: h - 1, : w - 1], seg[: h - 1, : w - 1], seg[1:h, 1:w])  # down-right
        mark(edge[: h - 1, 1:], seg[: h - 1, 1:w], seg[1:h, : w - 1])  # down-left
        results["gt_edge_map"] = _dilate(edge, self.edge_width)
        results["edge_width"] = self.edge_width
        return results

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(edge_width={self.edge_width}, ignore_index={self.ignore_index})"
        )
