"""``DeepClusterHook`` and ``ODCHook`` (MMSelfSup 1.x): the clustering steps of DeepCluster
(Caron et al., 2018) and ODC (Zhan et al., 2020), which live outside the train step.

``DeepClusterHook`` (before training when ``initial``, then every ``interval`` epochs):
extracts the feature of every sample with ``extract_dataloader`` (backbone -> neck on the
last stage, in dataset order), clusters them (``clustering=dict(type='Kmeans', k, pca_dim)``,
vistra's seeded torch k-means, see ``vistra.models.selfsup.clustering``), saves the labels
to ``work_dir/cluster_epoch_{epoch}.npy``, gives them to the training dataset
(``assign_labels``), optionally to ``DeepClusterSampler`` for cluster-uniform sampling,
re-weights the loss by ``histogram ** -reweight_pow``, re-initialises the head, and with
``init_memory`` fills ODC's memory bank. Clustering runs on rank 0 and its labels are
broadcast, as upstream.

``ODCHook`` (every iteration): updates ODC's centroids every ``centroids_update_interval``
iterations, dissolves small clusters every ``deal_with_small_clusters_interval``, refreshes
the loss re-weighting and logs the cluster-size histogram every ``evaluate_interval``.
MMSelfSup refuses ``dist_mode=False``; vistra's memory works in one process too.
"""

from __future__ import annotations

import logging
import os.path as osp
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from vistra.dist.model_wrap import unwrap
from vistra.engine.hooks.hook import Hook
from vistra.models.selfsup.clustering import CLUSTERING
from vistra.registry import HOOKS

logger = logging.getLogger("vistra")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def inverse_frequency_weights(labels: np.ndarray, num_classes: int, power: float) -> torch.Tensor:
    """``(count + 1e-10) ** -power`` per class, normalised to sum 1 (MMSelfSup's re-weighting)."""
    histogram = np.bincount(labels, minlength=num_classes).astype(np.float32)
    inverse = (1.0 / (histogram + 1e-10)) ** power
    return torch.from_numpy(inverse / inverse.sum())


def _log_histogram(labels: np.ndarray, num_classes: int) -> None:
    histogram = np.bincount(labels, minlength=num_classes)
    logger.info(
        "empty_num: %d\tmin_cluster: %d\tmax_cluster: %d",
        int((histogram == 0).sum()), int(histogram.min()), int(histogram.max()),
    )  # fmt: skip


@torch.no_grad()
def extract_features(model: Any, loader: Any) -> torch.Tensor:
    """``neck([backbone(x)[-1]])`` of every sample of ``loader``, flattened, in dataset
    order (the loader's sampler must not shuffle; shards of all ranks are interleaved)."""
    feats = []
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        out = model(**data, mode="tensor")
        if model.neck is not None:
            out = model.neck([out[-1]])
        feats.append(out[0].reshape(out[0].size(0), -1).float())
    local = torch.cat(feats)
    n = len(loader.dataset)
    if _distributed():
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local.contiguous())
        # rank r holds samples r, r + world, ...: interleave back to dataset order
        local = torch.stack(parts, dim=1).flatten(0, 1)
    return local[:n].cpu()


@HOOKS.register_module()
class DeepClusterHook(Hook):
    """Global clustering of DeepCluster (and ODC's initial clustering), MMSelfSup's arguments."""

    def __init__(
        self,
        extract_dataloader: dict,
        clustering: dict,
        unif_sampling: bool,
        reweight: bool,
        reweight_pow: float,
        init_memory: bool = False,
        initial: bool = True,
        interval: int = 1,
        seed: int | None = None,
    ) -> None:
        clustering = dict(clustering)
        kind = clustering.pop("type", None)
        if kind not in CLUSTERING:
            raise ValueError(
                f"DeepClusterHook clustering type must be one of {sorted(CLUSTERING)}, got {kind!r}"
            )
        self.extract_dataloader_cfg = extract_dataloader
        self.clustering_type = kind
        self.clustering_cfg = clustering
        self.unif_sampling = unif_sampling
        self.reweight = reweight
        self.reweight_pow = reweight_pow
        self.init_memory = init_memory
        self.initial = initial
        self.interval = interval
        self.seed = seed
        self._loader: Any = None

    def _extract_loader(self, runner: Any) -> Any:
        if self._loader is None:
            if not isinstance(self.extract_dataloader_cfg, dict):
                self._loader = self.extract_dataloader_cfg
            else:
                from vistra.engine.build import build_dataloader

                seed = runner.seed if self.seed is None else self.seed
                self._loader = build_dataloader(
                    self.extract_dataloader_cfg, "DeepClusterHook.extract_dataloader", seed,
                    getattr(runner, "rank", 0),
                )  # fmt: skip
        return self._loader

    def before_train(self, runner: Any) -> None:
        if self.initial:
            self.deepcluster(runner)

    def after_train_epoch(self, runner: Any) -> None:
        if self.every_n_epochs(runner, self.interval):
            self.deepcluster(runner)

    def deepcluster(self, runner: Any) -> None:
        """Cluster the dataset and hand the labels to the dataset, sampler and model."""
        model = unwrap(runner.model)
        model.eval()
        features = extract_features(model, self._extract_loader(runner))
        model.train()
        k = self.clustering_cfg.get("k")
        if not _distributed() or dist.get_rank() == 0:
            algo = CLUSTERING[self.clustering_type](**self.clustering_cfg)
            algo.cluster(features.numpy())
            labels = algo.labels.astype(np.int64)
            np.save(osp.join(runner.work_dir, f"cluster_epoch_{runner.epoch}.npy"), labels)
            _log_histogram(labels, k)
        else:
            labels = np.zeros(len(features), dtype=np.int64)
        if _distributed():
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            shared = torch.from_numpy(labels).to(device)
            dist.broadcast(shared, 0)
            labels = shared.cpu().numpy()
        loader = runner.train_dataloader
        dataset = loader.dataset
        if not hasattr(dataset, "assign_labels"):
            raise TypeError(
                "DeepClusterHook needs a training dataset with assign_labels() (MMSelfSup's "
                f"DeepClusterImageNet); got {type(dataset).__name__}"
            )
        dataset.assign_labels(labels.tolist())
        if self.unif_sampling:
            loader.sampler.set_uniform_indices(labels.tolist(), k)
        if self.reweight:
            weights = inverse_frequency_weights(
                labels, model.memory_bank.num_classes, self.reweight_pow
            )
            model.loss_weight.copy_(weights.to(model.loss_weight))
        # a fresh classifier for the new (arbitrarily numbered) clusters
        model.head._is_init = False
        model.head.init_weights()
        if _distributed():
            for tensor in model.head.state_dict().values():
                dist.broadcast(tensor, 0)
        if self.init_memory:
            model.memory_bank.init_memory(features.numpy(), labels)


@HOOKS.register_module()
class ODCHook(Hook):
    """Online clustering steps of ODC, MMSelfSup's arguments."""

    def __init__(
        self,
        centroids_update_interval: int,
        deal_with_small_clusters_interval: int,
        evaluate_interval: int,
        reweight: bool,
        reweight_pow: float,
        dist_mode: bool = True,
    ) -> None:
        self.centroids_update_interval = centroids_update_interval
        self.deal_with_small_clusters_interval = deal_with_small_clusters_interval
        self.evaluate_interval = evaluate_interval
        self.reweight = reweight
        self.reweight_pow = reweight_pow
        self.dist_mode = dist_mode

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        model = unwrap(runner.model)
        memory = model.memory_bank
        if self.every_n_train_iters(runner, self.centroids_update_interval):
            memory.update_centroids_memory()
        if self.every_n_train_iters(runner, self.deal_with_small_clusters_interval):
            memory.deal_with_small_clusters()
        # MMSelfSup re-weights after every iteration whatever ``reweight`` says, with the
        # default power 0.5 (not ``reweight_pow``); kept so that runs match
        self.set_reweight(runner)
        if self.every_n_train_iters(runner, self.evaluate_interval):
            _log_histogram(memory.label_bank.numpy(), memory.num_classes)

    def after_train_epoch(self, runner: Any) -> None:
        if self.every_n_epochs(runner, 10) and getattr(runner, "rank", 0) == 0:
            labels = unwrap(runner.model).memory_bank.label_bank.numpy()
            np.save(osp.join(runner.work_dir, f"cluster_epoch_{runner.epoch + 1}.npy"), labels)

    def set_reweight(
        self, runner: Any, labels: np.ndarray | None = None, reweight_pow: float = 0.5
    ) -> None:
        """Class weights ``count ** -reweight_pow`` into ``loss_weight`` and the head's loss."""
        model = unwrap(runner.model)
        if labels is None:
            labels = model.memory_bank.label_bank.cpu().numpy()
        weights = inverse_frequency_weights(labels, model.memory_bank.num_classes, reweight_pow)
        model.loss_weight.copy_(weights.to(model.loss_weight))
        model.head.loss.class_weight = model.loss_weight.tolist()
