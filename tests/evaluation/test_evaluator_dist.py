"""Two real gloo processes: padding added by the sampler is dropped, ranks agree."""

import datetime
import pickle
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vistra.evaluation import Accuracy, Evaluator, IoUMetric
from vistra.evaluation.metric import BaseMetric

SIZE = 5  # odd: with 2 ranks the sampler repeats sample 0 on rank 1
WORLD = 2
CLASSES = ("bg", "fg")


class SampleIds(BaseMetric):
    """Reports which samples reached compute_metrics, in order."""

    default_prefix = "ids"

    def process(self, data_batch, data_samples):
        self.results.extend(s["sample_idx"] for s in data_samples)

    def compute_metrics(self, results):
        return {"order": list(results)}


def make_sample(idx: int) -> dict:
    # Only sample 0 is classified right; sample i's mask predicts fg on i + 1 of 4 pixels
    # that are all fg, so counting sample 0 twice would change every number.
    score = torch.tensor([0.9, 0.1]) if idx == 0 else torch.tensor([0.2, 0.8])
    pred = torch.zeros(4, dtype=torch.long)
    pred[: (idx % 4) + 1] = 1
    return {
        "sample_idx": idx,
        "pred_score": score,
        "gt_label": torch.tensor([0]),
        "pred_sem_seg": {"data": pred.reshape(1, 2, 2)},
        "gt_sem_seg": {"data": torch.ones(1, 2, 2, dtype=torch.long)},
    }


def make_evaluator() -> Evaluator:
    evaluator = Evaluator([Accuracy(), IoUMetric(), SampleIds()])
    evaluator.dataset_meta = {"classes": CLASSES}
    return evaluator


def shard(rank: int) -> list[int]:
    """What a distributed sampler gives ``rank``: indices padded to a multiple of WORLD."""
    indices = list(range(SIZE))
    indices += indices[: (-SIZE) % WORLD]
    return indices[rank::WORLD]


def worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        evaluator = make_evaluator()
        mine = shard(rank)
        for start in range(0, len(mine), 2):  # batches of 2
            evaluator.process([make_sample(i) for i in mine[start : start + 2]])
        result = evaluator.evaluate(SIZE)
        with open(f"{out_dir}/rank{rank}.pkl", "wb") as f:
            pickle.dump(result, f)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.dist
@pytest.mark.timeout(120)
def test_two_ranks_count_every_sample_once_and_agree(tmp_path):
    assert shard(1) == [1, 3, 0]  # the padding this test is about
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(WORLD)]

    single = make_evaluator()
    single.process([make_sample(i) for i in range(SIZE)])
    expected = single.evaluate(SIZE)

    assert results[0] == results[1] == expected
    assert expected["ids/order"] == [0, 1, 2, 3, 4]
    assert expected["accuracy/top1"] == pytest.approx(20.0)  # 1 of 5, not 2 of 6
    # fg pixels predicted 1+2+3+4+1 = 11 of 20; with sample 0 twice it would be 12 of 24
    assert expected["aAcc"] == 55.0
