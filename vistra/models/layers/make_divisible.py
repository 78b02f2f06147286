"""``make_divisible``: round a channel count to a multiple of ``divisor`` (MobileNet rule)."""

from __future__ import annotations


def make_divisible(
    value: float, divisor: int, min_value: int | None = None, min_ratio: float = 0.9
) -> int:
    """The multiple of ``divisor`` nearest to ``value`` (at least ``min_value``, which
    defaults to ``divisor``), bumped up by one ``divisor`` when rounding lost more than
    ``1 - min_ratio`` of ``value``. The TensorFlow MobileNet rule, as MMSegmentation uses it.
    """
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < min_ratio * value:
        rounded += divisor
    return rounded
