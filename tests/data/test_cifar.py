import pickle

import numpy as np
import pytest

from vistra.data.datasets.cifar import CIFAR10, CIFAR100
from vistra.registry import DATASETS


def _batch(n, offset, label_key):
    data = np.zeros((n, 3072), np.uint8)
    data[:, :1024] = 200  # red plane
    data[:, 1024:2048] = 100  # green plane
    data[:, 2048:] = np.arange(n)[:, None] + offset  # blue plane: sample id
    return {b"batch_label": b"x", label_key: [(i + offset) % 3 for i in range(n)], b"data": data}


def _dump(path, obj, protocol=2):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


@pytest.fixture
def cifar10_root(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    for k in range(1, 6):
        _dump(folder / f"data_batch_{k}", _batch(2, 10 * k, b"labels"))
    _dump(folder / "test_batch", _batch(3, 0, b"labels"), protocol=5)
    _dump(folder / "batches.meta", {b"label_names": [b"zero", b"one", b"two"], b"num_vis": 3072})
    return tmp_path / "cifar10"


@pytest.fixture
def cifar100_root(tmp_path):
    folder = tmp_path / "c100" / "cifar-100-python"
    _dump(folder / "train", _batch(4, 0, b"fine_labels"))
    _dump(folder / "test", _batch(2, 0, b"fine_labels"))
    _dump(folder / "meta", {"fine_label_names": ["f0", "f1", "f2"], "coarse_label_names": ["c"]})
    return folder


def test_cifar10_train_and_test_splits(cifar10_root):
    train = CIFAR10(data_root=str(cifar10_root))
    assert len(train) == 10
    assert train.CLASSES == ("zero", "one", "two")  # from batches.meta
    info = train.get_data_info(3)
    assert info["img"].shape == (32, 32, 3) and info["img"].dtype == np.uint8
    assert info["img"][0, 0].tolist() == [200, 100, 21]  # RGB, as MMPretrain stores CIFAR
    assert info["gt_label"] == 21 % 3 and info["img_shape"] == (32, 32)
    test = DATASETS.build(
        dict(type="CIFAR10", data_root=str(cifar10_root), split="test", test_mode=True)
    )
    assert len(test) == 3 and [test.get_data_info(i)["gt_label"] for i in range(3)] == [0, 1, 2]


def test_data_root_may_be_the_batches_folder(cifar10_root):
    assert len(CIFAR10(data_root=str(cifar10_root / "cifar-10-batches-py"), split="test")) == 3


def test_metainfo_classes_override_the_meta_file(cifar10_root):
    ds = CIFAR10(data_root=str(cifar10_root), metainfo=dict(classes=["a", "b", "c"]))
    assert ds.CLASSES == ("a", "b", "c")


def test_cifar100_reads_fine_labels(cifar100_root):
    ds = CIFAR100(data_root=str(cifar100_root), split="train", pipeline=[dict(type="PackInputs")])
    assert len(ds) == 4 and ds.CLASSES == ("f0", "f1", "f2")
    out = ds[1]
    assert out["inputs"].shape == (3, 32, 32) and int(out["data_samples"].gt_label) == 1


def test_missing_files_say_where_and_that_nothing_is_downloaded(tmp_path, cifar10_root):
    (cifar10_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing data_batch_3 in '.*cifar-10-batches-py'"):
        CIFAR10(data_root=str(cifar10_root))
    with pytest.raises(FileNotFoundError, match="download=True is not supported"):
        CIFAR10(data_root=str(tmp_path / "none"), download=True)


def test_bad_split_and_no_root():
    with pytest.raises(ValueError, match="split"):
        CIFAR10(data_root="x", split="val")
    with pytest.raises(ValueError, match="needs data_root"):
        CIFAR10()


def test_batches_holding_code_are_refused(cifar100_root):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    _dump(cifar100_root / "test", {b"data": Evil(), b"fine_labels": []})
    with pytest.raises(ValueError, match=r"refusing to load (__builtin__|builtins).print"):
        CIFAR100(data_root=str(cifar100_root), split="test")
