from vistra.data.samplers import DefaultSampler, InfiniteSampler, sample_seed


def take(it, n):
    return [next(it) for _ in range(n)]


def test_default_sampler_is_a_function_of_seed_and_epoch():
    data = list(range(10))
    a, b = DefaultSampler(data, seed=3), DefaultSampler(data, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
    assert sorted(a) == data


def test_set_start_skips_exactly_and_only_once():
    s = DefaultSampler(list(range(10)), seed=0)
    full = list(s)
    s.set_start(4)
    assert list(s) == full[4:]
    assert list(s) == full  # next pass starts at the beginning again


def test_unshuffled_and_round_up_len():
    s = DefaultSampler(list(range(5)), shuffle=False)
    assert list(s) == [0, 1, 2, 3, 4]
    assert len(s) == 5


def test_sample_seeds_depend_on_epoch_and_index_only():
    s = DefaultSampler(list(range(6)), seed=1)
    s.seed_samples = True
    s.set_epoch(1)
    items = list(s)
    assert all(seed == sample_seed(1, 1, idx) for idx, seed in items)
    assert len({seed for _, seed in items}) == 6


def test_infinite_sampler_resumes_at_any_position():
    s = InfiniteSampler(list(range(7)), seed=5)
    stream = take(iter(s), 30)
    for start in (0, 3, 7, 15, 29):
        s.set_start(start)
        assert take(iter(s), 30 - start) == stream[start:]
    # each pass is a permutation
    assert sorted(stream[:7]) == list(range(7)) and sorted(stream[7:14]) == list(range(7))
