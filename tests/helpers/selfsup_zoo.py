"""The self-supervised zoo (issue #18): one entry per algorithm and package whose config
tree names it, the batch its loss is compared on, and the options its training test needs.

The oracle (``oracle.py selfsup loss-batch``, tools/upstream/oracle_selfsup.py) builds the
upstream model of ``config``, randomises it, writes the batch (``make_batch`` there: pixel
views in ``[0, 255]``, masks, sample indices) and the loss dict, seeding ``torch`` with
``seed + 2`` right before ``mode='loss'``. :func:`vistra_losses` here loads that checkpoint
the way ``load_from`` does, builds the data samples as the config's packing transform
would (``PackSelfSupInputs``: ``mask.value``; ``PackInputs``: ``mask``), runs vistra's data
preprocessor and seeds the same way, so each vistra algorithm that draws its random
numbers as upstream does (in the same order, with the same shapes) gives the same loss.

``VISTRA_SELFSUP_ONLY=name,...`` limits the tests to the entries named.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vistra.checkpoint import load_state_dict
from vistra.data.structures import DataSample
from vistra.data.transforms.selfsup_formatting import ValueData

SEED = 5
# |loss| above 1 is compared relative to its size: 1e-4 of a BarlowTwins loss of 2000 is
# below float32's resolution for sums of that many terms
TOLERANCE = 1e-4


@dataclass(frozen=True)
class Algorithm:
    # "mmselfsup:selfsup/byol/byol_resnet50_16xb256-coslr-200e_in1k.py" or
    # "mmpretrain:byol/byol_resnet50_16xb256-coslr-200e_in1k.py" (the wheel's own file)
    config: str
    # one view per entry (its side in pixels); two views of 64 for a siamese method
    sizes: tuple[int, ...] = (64, 64)
    batch: int = 4
    # True where the pipeline packs one image as a tensor (MMPretrain's PackInputs without
    # MultiView) rather than a list of views
    single: bool = False
    # (h, w, ratio): a 0/1 mask per sample with exactly round(ratio * h * w) ones
    mask: tuple[int, int, float] | None = None
    sample_idx: bool = False
    # --cfg-options for both sides of the loss comparison (e.g. a smaller memory bank)
    cfg_options: tuple[str, ...] = ()
    # (key, value) overrides for the two-iteration training test, beside the shrinking
    # that tests/upstream/test_selfsup_zoo.py does for every algorithm
    train_options: tuple[tuple[str, object], ...] = ()
    # True: only under VISTRA_ZOO_FULL (a step of seconds or more on two cores)
    heavy: bool = False
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def package(self) -> str:
        return self.config.split(":", 1)[0]

    @property
    def relative(self) -> str:
        return self.config.split(":", 1)[1]


def _a(config: str, **kwargs) -> Algorithm:
    return Algorithm(config, **kwargs)


ALGORITHMS: dict[str, Algorithm] = {
    # already in vistra before #18
    "mae": _a("mmpretrain:mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py", sizes=(224,),
              batch=2, single=True),
    "mae-mmselfsup": _a("mmselfsup:selfsup/mae/mae_vit-base-p16_8xb512-coslr-400e_in1k.py",
                        sizes=(224,), batch=2),
    "simclr": _a("mmpretrain:simclr/simclr_resnet50_16xb256-coslr-200e_in1k.py"),
    "simclr-mmselfsup": _a("mmselfsup:selfsup/simclr/simclr_resnet50_8xb32-coslr-200e_in1k.py"),
    # group A (contrastive, siamese)
    # group B1 (MoCo v3, SwAV, pretext tasks)
    # group B2 (memory banks, clustering)
    # group C1 (SimMIM, MaskFeat, PixMIM)
    # group C2 (MixMIM, SparK)
    # group D (BEiT v1/v2, CAE)
    # group E1 (CLIP, EVA, MILAN, MFF)
    # group E2 (iTPN, HiViT MAE)
}  # fmt: skip


def selected() -> dict[str, Algorithm]:
    only = os.environ.get("VISTRA_SELFSUP_ONLY")
    if not only:
        return dict(ALGORITHMS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALGORITHMS]
    if unknown:
        raise KeyError(f"VISTRA_SELFSUP_ONLY names unknown algorithms {unknown}; known: "
                       f"{sorted(ALGORITHMS)}")  # fmt: skip
    return {n: ALGORITHMS[n] for n in names}


def config_path(algorithm: Algorithm, tree: Path) -> Path:
    """``tree`` is the wheel's config folder of ``algorithm.package``."""
    return tree / algorithm.relative


def oracle_job(algorithm: Algorithm, path: Path, outdir: Path) -> dict:
    return {
        "config": str(path),
        "outdir": str(outdir),
        "seed": SEED,
        "sizes": list(algorithm.sizes),
        "batch": algorithm.batch,
        "single": algorithm.single,
        "mask": list(algorithm.mask) if algorithm.mask else None,
        "sample_idx": algorithm.sample_idx,
        "cfg_options": list(algorithm.cfg_options),
    }


def data_samples(algorithm: Algorithm, batch: dict) -> list[DataSample]:
    """The samples of the oracle's batch, laid out as the config's packing transform does."""
    inputs = batch["inputs"]
    n = (inputs if torch.is_tensor(inputs) else inputs[0]).shape[0]
    selfsup_layout = algorithm.package == "mmselfsup"
    samples = [DataSample() for _ in range(n)]
    for i, sample in enumerate(samples):
        if batch.get("mask") is not None:
            mask = batch["mask"][i]
            sample.mask = ValueData(value=mask) if selfsup_layout else mask
        if batch.get("sample_idx") is not None:
            idx = batch["sample_idx"][i : i + 1]
            if selfsup_layout:
                sample.sample_idx = ValueData(value=idx)
            else:
                sample.set_metainfo({"sample_idx": int(idx)})
    return samples


def load_upstream(model: torch.nn.Module, folder: Path):
    """The oracle's randomised weights, loaded as ``load_from`` loads a checkpoint."""
    state = torch.load(folder / "upstream.pth", map_location="cpu", weights_only=True)
    return load_state_dict(model, state["state_dict"], source=str(folder / "upstream.pth"))


def vistra_losses(model: torch.nn.Module, algorithm: Algorithm, folder: Path) -> dict:
    """vistra's loss dict on the oracle's batch, seeded as the oracle seeds."""
    batch = torch.load(folder / "batch.pt", weights_only=True)
    inputs = batch["inputs"]
    inputs = inputs.clone() if torch.is_tensor(inputs) else [v.clone() for v in inputs]
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(
            {"inputs": inputs, "data_samples": data_samples(algorithm, batch)}, True
        )
        torch.manual_seed(SEED + 2)
        losses = model(**data, mode="loss")
    return {k: v.detach() for k, v in losses.items() if torch.is_tensor(v)}


def loss_diffs(ours: dict, upstream: dict) -> dict[str, float]:
    """Per loss key, |ours - upstream| scaled by max(1, |upstream|)."""
    assert set(ours) == set(upstream), f"loss keys differ: {sorted(ours)} vs {sorted(upstream)}"
    diffs = {}
    for key, ref in upstream.items():
        ref = ref.double()
        diff = (ours[key].double() - ref).abs().max().item()
        diffs[key] = diff / max(1.0, ref.abs().max().item())
    return diffs
