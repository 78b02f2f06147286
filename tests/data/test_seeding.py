import random

import numpy as np
import pytest
import torch

from vistra.data.seeding import seeded_rng, split_index


def _draw() -> tuple:
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_same_seed_gives_same_draws_and_different_seeds_differ():
    with seeded_rng(7):
        a = _draw()
    with seeded_rng(7):
        b = _draw()
    with seeded_rng(8):
        c = _draw()
    assert a == b
    assert all(x != y for x, y in zip(a, c))


def _outer_after(inner_seed: int) -> tuple:
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    with seeded_rng(inner_seed):
        _draw()
    return _draw()


def test_outer_streams_continue_independently_of_the_inner_seed():
    # The caller's streams after the block depend on their own earlier state only.
    assert _outer_after(123) == _outer_after(456)
    torch.manual_seed(1)
    expected_torch = torch.rand(3).tolist()
    torch.manual_seed(1)
    with seeded_rng(9):
        torch.rand(5)
    assert torch.rand(3).tolist() == expected_torch  # torch's stream is restored exactly


def test_outer_streams_continue_after_an_exception():
    def run(inner: int) -> float:
        np.random.seed(3)
        with pytest.raises(RuntimeError), seeded_rng(inner):
            np.random.rand(10)
            raise RuntimeError("boom")
        return float(np.random.rand())

    assert run(5) == run(6)


def test_large_and_negative_seeds_are_accepted():
    with seeded_rng(2**40 + 3):
        a = _draw()
    with seeded_rng(2**40 + 3):
        assert _draw() == a
    with seeded_rng(-5):
        _draw()


@pytest.mark.parametrize("bad", [1.5, "3", None, True])
def test_seed_must_be_an_int(bad):
    with pytest.raises(TypeError, match="seed must be an int"), seeded_rng(bad):
        pass


def test_split_index():
    assert split_index(4) == (4, None)
    assert split_index((4, 99)) == (4, 99)
    assert split_index([np.int64(2), 5]) == (2, 5)
    assert split_index(torch.tensor(3)) == (3, None)
    with pytest.raises(TypeError, match="index"):
        split_index((1, 2, 3))
    with pytest.raises(TypeError, match="index must be an int"):
        split_index("1")
