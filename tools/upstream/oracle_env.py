"""Make the pinned upstream packages importable in one process (the oracle's, never vistra's).

Imported first by every oracle command. It only adapts the *environment* the upstream code
runs in, never its behaviour:

- ``mmcv._ext`` (compiled ops, absent from mmcv-lite) becomes a module whose every op raises
  when called, so ``import mmcv.ops`` succeeds and its pure-Python parts (``point_sample``,
  which is ``F.grid_sample``) work, while a model that really needs a compiled op fails loudly;
- MMSelfSup 1.0.0 and mmcls 1.0.0rc6 assert ``mmcv < 2.1.0`` at import time although the
  parts used here run unchanged on mmcv-lite 2.1.0: their version check is passed by showing
  them 2.0.1 while they import, then the real version is put back;
- one op is given a reference instead of a stub: ``psamask_forward`` (PSANet's point-wise
  spatial attention mask), a per-pixel Python loop with the semantics of MMCV's CPU kernel,
  so that upstream PSANet runs at all (the numeric test's maps are a few pixels a side);
- torch >= 2.6 loads with ``weights_only=True`` by default, which MMEngine 0.10.7 predates;
  the oracle's own files are trusted, so its ``torch.load`` calls get ``weights_only=False``;
- setuptools >= 81 no longer ships ``pkg_resources``, which MMEngine's config loader
  imports to find an installed package's configs (the ``mmcls::`` bases of MMSelfSup's
  benchmark configs): where it is missing, tools/upstream/shims/pkg_resources.py answers
  ``get_distribution`` from ``importlib.metadata``;
- NumPy 2.4 removed ``np.in1d`` (deprecated in 2.0 for ``np.isin``), which MMPretrain's
  retrieval metrics call: it is put back as what it was, ``np.isin`` of the flattened input.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
import types
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


class _MissingOps(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def missing(*args, **kwargs):
            raise RuntimeError(f"mmcv compiled op {name!r} is not available in mmcv-lite")

        return missing


_ext = _MissingOps("mmcv._ext")
# a spec without a loader: MMEngine's `mmcv_full_available()` then says False, as it should
_ext.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)


def _psamask_forward(
    input,  # noqa: A002 (MMCV's argument names: it calls with keywords)
    output,
    psa_type,
    num_,
    h_feature,
    w_feature,
    h_mask,
    w_mask,
    half_h_mask,
    half_w_mask,
):
    """Fill ``out`` (N, H*W, H, W) from the predicted ``mask`` (N, h_mask*w_mask, H, W): the
    mask window centred on each position (h, w) is laid onto the feature grid, clipped at
    its borders; 'collect' (0) indexes the result by the neighbour, 'distribute' (1) by the
    centre."""
    mask, out = input, output
    for n in range(num_):
        for h in range(h_feature):
            for w in range(w_feature):
                for hi in range(max(0, half_h_mask - h), min(h_mask, h_feature + half_h_mask - h)):
                    for wi in range(
                        max(0, half_w_mask - w), min(w_mask, w_feature + half_w_mask - w)
                    ):
                        neighbour = (hi + h - half_h_mask) * w_feature + (wi + w - half_w_mask)
                        value = mask[n, hi * w_mask + wi, h, w]
                        if psa_type == 0:
                            out[n, neighbour, h, w] = value
                        else:
                            out[
                                n, h * w_feature + w, neighbour // w_feature, neighbour % w_feature
                            ] = value


_ext.psamask_forward = _psamask_forward
sys.modules.setdefault("mmcv._ext", _ext)


def _in1d(ar1, ar2, assume_unique=False, invert=False):
    import numpy as np

    return np.isin(np.asarray(ar1).ravel(), ar2, assume_unique=assume_unique, invert=invert)


def _restore_in1d() -> None:
    import numpy as np

    if not hasattr(np, "in1d"):
        np.in1d = _in1d


_restore_in1d()


def _pkg_resources_shim() -> None:
    """Put tools/upstream/shims (a ``pkg_resources`` from importlib.metadata) on the path
    where setuptools no longer has one (a real file: MMEngine reloads the module)."""
    import importlib.util

    if importlib.util.find_spec("pkg_resources") is None:
        sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "shims"))


_pkg_resources_shim()


def import_package(name: str) -> types.ModuleType:
    """Import ``mmengine``, ``mmpretrain``, ``mmseg``, ``mmselfsup`` or ``mmcls``."""
    if name not in ("mmselfsup", "mmcls") or name in sys.modules:
        return importlib.import_module(name)
    import mmcv

    real = mmcv.__version__
    mmcv.__version__ = "2.0.1"
    try:
        return importlib.import_module(name)
    finally:
        mmcv.__version__ = real


def register_all(scope: str) -> None:
    """Fill MMEngine's registries for ``scope`` as the package's tools do."""
    package = {
        "mmpretrain": "mmpretrain",
        "mmcls": "mmcls",
        "mmseg": "mmseg",
        "mmselfsup": "mmselfsup",
    }[scope]
    import_package(package)
    utils = importlib.import_module(f"{package}.utils")
    utils.register_all_modules(init_default_scope=False)
