"""``RandAugment`` and ``AutoAugment`` (MMPretrain's config forms).

``policies='timm_increasing'`` / ``'imagenet'`` or explicit lists of op dicts
(``dict(type='Rotate', magnitude_range=(0, 30))``); ``hparams`` are merged into the ops
whose constructors name them; RandAugment maps ``magnitude_level / total_level`` onto
each op's ``magnitude_range``. The ops live in :mod:`vistra.data.transforms.augment_ops`.
"""

from __future__ import annotations

import inspect

import numpy as np

from vistra.data.transforms import augment_ops  # noqa: F401 - registers the ops
from vistra.data.transforms.base import BaseTransform, Compose
from vistra.data.transforms.functional import choose
from vistra.data.transforms.wrappers import RandomChoice
from vistra.registry import TRANSFORMS


# --------------------------------------------------------------------------- policies
def merge_hparams(policy: dict, hparams: dict) -> dict:
    """Add each ``hparams`` entry the op's constructor names and the policy leaves unset."""
    policy = dict(policy)
    op = TRANSFORMS.get(policy.get("type", ""))
    if op is None:
        raise KeyError(f"unknown augmentation policy type {policy.get('type')!r} in {policy!r}")
    op_args = inspect.getfullargspec(op.__init__).args
    for key, value in hparams.items():
        if key in op_args and key not in policy:
            policy[key] = value
    return policy


@TRANSFORMS.register_module()
class RandAugment(BaseTransform):
    """Apply ``num_policies`` ops drawn (with replacement) from ``policies``, all at
    ``magnitude_level`` out of ``total_level`` (jittered by ``magnitude_std``)."""

    def __init__(
        self,
        policies: str | list[dict],
        num_policies: int,
        magnitude_level: float,
        magnitude_std: float | str = 0.0,
        total_level: float = 10,
        hparams: dict = dict(pad_val=128),  # noqa: B006 - MMPretrain's signature; copied below
    ) -> None:
        if isinstance(policies, str):
            policies = RANDAUG_POLICIES[choose(policies, tuple(RANDAUG_POLICIES), "policies")]
        if num_policies <= 0 or magnitude_level < 0 or total_level <= 0:
            raise ValueError(
                "RandAugment needs num_policies > 0, magnitude_level >= 0 and total_level > 0; got "
                f"{num_policies}, {magnitude_level}, {total_level}"
            )
        self.num_policies = num_policies
        self.magnitude_level = magnitude_level
        self.magnitude_std = magnitude_std
        self.total_level = total_level
        self.hparams = dict(hparams)
        level_cfg = dict(
            magnitude_level=magnitude_level, total_level=total_level, magnitude_std=magnitude_std
        )
        self.policies, self.transforms = [], []
        for i, policy in enumerate(policies):
            if not isinstance(policy, dict) or "type" not in policy:
                raise ValueError(
                    f"RandAugment policies[{i}] must be a dict with 'type', got {policy!r}"
                )
            policy = merge_hparams(policy, self.hparams)
            policy.pop("magnitude_key", None)  # older MMPretrain configs
            if "magnitude_range" in policy:
                policy.update(level_cfg)
            self.policies.append(policy)
            self.transforms.append(TRANSFORMS.build(policy, key_path=f"RandAugment.policies[{i}]"))

    def random_policy_indices(self) -> list[int]:
        return np.random.choice(len(self.transforms), size=self.num_policies).tolist()

    def transform(self, results: dict) -> dict | None:
        return Compose([self.transforms[i] for i in self.random_policy_indices()])(results)


@TRANSFORMS.register_module()
class AutoAugment(RandomChoice):
    """Apply one sub-policy (a list of ops), picked uniformly from ``policies``."""

    def __init__(self, policies: str | list[list[dict]], hparams: dict = dict(pad_val=128)) -> None:  # noqa: B006
        if isinstance(policies, str):
            policies = AUTOAUG_POLICIES[choose(policies, tuple(AUTOAUG_POLICIES), "policies")]
        self.hparams = dict(hparams)
        self.policies = [[merge_hparams(op, self.hparams) for op in sub] for sub in policies]
        super().__init__(transforms=self.policies)


def _autoaug_imagenet() -> list[list[dict]]:
    """AutoAugment's ImageNet policy in MMPretrain's op vocabulary."""
    P, R, S, E = "Posterize", "Rotate", "Solarize", "Equalize"  # noqa: N806
    op = dict
    pairs = [
        (op(type=P, bits=4, prob=0.4), op(type=R, angle=30.0, prob=0.6)),
        (op(type=S, thr=256 / 9 * 4, prob=0.6), op(type="AutoContrast", prob=0.6)),
        (op(type=E, prob=0.8), op(type=E, prob=0.6)),
        (op(type=P, bits=5, prob=0.6), op(type=P, bits=5, prob=0.6)),
        (op(type=E, prob=0.4), op(type=S, thr=256 / 9 * 5, prob=0.2)),
        (op(type=E, prob=0.4), op(type=R, angle=30 / 9 * 8, prob=0.8)),
        (op(type=S, thr=256 / 9 * 6, prob=0.6), op(type=E, prob=0.6)),
        (op(type=P, bits=6, prob=0.8), op(type=E, prob=1.0)),
        (op(type=R, angle=10.0, prob=0.2), op(type=S, thr=256 / 9, prob=0.6)),
        (op(type=E, prob=0.6), op(type=P, bits=5, prob=0.4)),
        (
            op(type=R, angle=30 / 9 * 8, prob=0.8),
            op(type="ColorTransform", magnitude=0.0, prob=0.4),
        ),
        (op(type=R, angle=30.0, prob=0.4), op(type=E, prob=0.6)),
        (op(type=E, prob=0.0), op(type=E, prob=0.8)),
        (op(type="Invert", prob=0.6), op(type=E, prob=1.0)),
        (
            op(type="ColorTransform", magnitude=0.4, prob=0.6),
            op(type="Contrast", magnitude=0.8, prob=1.0),
        ),
        (
            op(type=R, angle=30 / 9 * 8, prob=0.8),
            op(type="ColorTransform", magnitude=0.2, prob=1.0),
        ),
        (op(type="ColorTransform", magnitude=0.8, prob=0.8), op(type=S, thr=256 / 9 * 2, prob=0.8)),
        (op(type="Sharpness", magnitude=0.7, prob=0.4), op(type="Invert", prob=0.6)),
        (
            op(type="Shear", magnitude=0.3 / 9 * 5, prob=0.6, direction="horizontal"),
            op(type=E, prob=1.0),
        ),
        (op(type="ColorTransform", magnitude=0.0, prob=0.4), op(type=E, prob=0.6)),
        (op(type=E, prob=0.4), op(type=S, thr=256 / 9 * 5, prob=0.2)),
        (op(type=S, thr=256 / 9 * 4, prob=0.6), op(type="AutoContrast", prob=0.6)),
        (op(type="Invert", prob=0.6), op(type=E, prob=1.0)),
        (
            op(type="ColorTransform", magnitude=0.4, prob=0.6),
            op(type="Contrast", magnitude=0.8, prob=1.0),
        ),
        (op(type=E, prob=0.8), op(type=E, prob=0.6)),
    ]
    return [list(p) for p in pairs]


AUTOAUG_POLICIES = {"imagenet": _autoaug_imagenet()}

# timm's _RAND_INCREASING_TRANSFORMS, as MMPretrain names them.
RANDAUG_POLICIES = {
    "timm_increasing": [
        dict(type="AutoContrast"),
        dict(type="Equalize"),
        dict(type="Invert"),
        dict(type="Rotate", magnitude_range=(0, 30)),
        dict(type="Posterize", magnitude_range=(4, 0)),
        dict(type="Solarize", magnitude_range=(256, 0)),
        dict(type="SolarizeAdd", magnitude_range=(0, 110)),
        dict(type="ColorTransform", magnitude_range=(0, 0.9)),
        dict(type="Contrast", magnitude_range=(0, 0.9)),
        dict(type="Brightness", magnitude_range=(0, 0.9)),
        dict(type="Sharpness", magnitude_range=(0, 0.9)),
        dict(type="Shear", magnitude_range=(0, 0.3), direction="horizontal"),
        dict(type="Shear", magnitude_range=(0, 0.3), direction="vertical"),
        dict(type="Translate", magnitude_range=(0, 0.45), direction="horizontal"),
        dict(type="Translate", magnitude_range=(0, 0.45), direction="vertical"),
    ]
}
