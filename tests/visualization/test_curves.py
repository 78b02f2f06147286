import json
import math

import pytest
from PIL import Image

from vistra.visualization import plot_training_curves
from vistra.visualization.curves import is_train_record, read_records, smooth, split_records


def _write(path, records, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def _epoch_run(iters_per_epoch=50, epochs=4):
    records = []
    for it in range(1, iters_per_epoch * epochs + 1):
        epoch = (it - 1) // iters_per_epoch + 1
        loss = 2.0 * math.exp(-it / 80)
        records.append(
            {
                "lr": 0.1 * (1 - it / 250),
                "data_time": 0.01,
                "loss": loss,
                "loss_cls": loss,
                "time": 0.1,
                "epoch": epoch,
                "iter": it,
                "memory": 100,
                "step": it,
            }
        )
        if it % iters_per_epoch == 0:
            records.append(
                {
                    "accuracy/top1": 40.0 + 10 * epoch,
                    "mIoU": 30.0 + epoch,
                    "data_time": 0.01,
                    "time": 0.05,
                    "step": epoch,
                }
            )
    return records


def test_train_and_val_lines_are_told_apart():
    train = {"lr": 0.1, "loss": 1.0, "iter": 3, "epoch": 1, "step": 3, "time": 0.1}
    val = {"accuracy/top1": 50.0, "time": 0.1, "data_time": 0.0, "step": 1}
    val_with_loss = {"loss": 0.7, "step": 1}  # no 'iter': an evaluation line
    assert is_train_record(train)
    assert not is_train_record(val)
    assert not is_train_record(val_with_loss)
    log = split_records([train, val, val_with_loss])
    assert set(log.losses) == {"loss"} and set(log.lrs) == {"lr"}
    assert set(log.metrics) == {"accuracy/top1", "loss"}  # time/data_time/step are not metrics
    assert log.metrics["accuracy/top1"].steps == [1.0]
    assert log.losses["loss"].steps == [3.0]
    assert log.has_epochs


def test_plot_epoch_run(tmp_path):
    scalars = _write(tmp_path / "scalars.json", _epoch_run())
    out = plot_training_curves(scalars, tmp_path / "out" / "curves.png")
    assert out == tmp_path / "out" / "curves.png"
    with Image.open(out) as image:
        width, height = image.size
    assert width >= 1000 and height >= 300  # three columns of panels: loss, lr, metrics
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]  # no temp file left


def test_plot_only_train_lines(tmp_path):
    records = [r for r in _epoch_run() if "iter" in r]
    out = plot_training_curves(_write(tmp_path / "scalars.json", records), tmp_path / "c.png")
    with Image.open(out) as image:
        assert image.size[0] >= 500 and image.size[1] >= 200


def test_torn_last_line_is_ignored_but_broken_middle_line_fails(tmp_path):
    records = _epoch_run(10, 1)
    torn = _write(tmp_path / "torn.json", records, tail='{"loss": 0.')
    assert len(read_records(torn)) == len(records)
    broken = tmp_path / "broken.json"
    broken.write_text('{"loss": 1, "iter": 1}\nnot json\n{"loss": 2, "iter": 2}\n')
    with pytest.raises(ValueError, match="broken.json:2"):
        read_records(broken)


def test_file_without_values_is_an_error(tmp_path):
    empty = _write(tmp_path / "scalars.json", [{"step": 1, "time": 0.1}])
    with pytest.raises(ValueError, match="scalars.json"):
        plot_training_curves(empty, tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_replaces_an_existing_png(tmp_path):
    out = tmp_path / "curves.png"
    out.write_bytes(b"old")
    plot_training_curves(_write(tmp_path / "s.json", _epoch_run(5, 2)), out)
    with Image.open(out) as image:
        assert image.format == "PNG"


def test_smooth_starts_at_the_data_and_follows_a_constant():
    assert smooth([3.0, 3.0, 3.0]) == pytest.approx([3.0, 3.0, 3.0])
    assert smooth([1.0, 0.0])[0] == pytest.approx(1.0)


def test_only_losses_are_smoothed():
    from vistra.visualization.curves import _panels

    panels = {p.title: p for p in _panels(split_records(_epoch_run(10, 1)))}
    assert panels["loss"].smoothed and not panels["learning rate"].smoothed
    assert panels["accuracy/top1"].markers and panels["accuracy/top1"].xlabel == "epoch"


def test_iteration_based_metrics_are_labelled_by_iteration():
    from vistra.visualization.curves import _panels

    records = [{"lr": 0.1, "loss": 1.0, "iter": 5, "step": 5}, {"mIoU": 3.0, "step": 5}]
    panels = {p.title: p for p in _panels(split_records(records))}
    assert panels["mIoU"].xlabel == "iteration"


def _iter_run(max_iters=40, val_interval=10):
    """An IterBasedTrainLoop's scalars.json: training lines carry epoch 0 (as MMEngine)."""
    records = []
    for it in range(1, max_iters + 1):
        records.append({"lr": 0.01, "loss": 1.0 / it, "epoch": 0, "iter": it, "step": it})
        if it % val_interval == 0:
            records.append({"mIoU": 10.0 + it, "aAcc": 50.0, "step": it})
    return records


def test_iteration_run_with_epoch_zero_labels_validation_by_iteration(tmp_path):
    from vistra.visualization.curves import _panels

    log = split_records(_iter_run())
    assert not log.has_epochs
    panels = {p.title: p for p in _panels(log)}
    assert panels["mIoU"].xlabel == "iteration" and panels["aAcc"].xlabel == "iteration"
    assert panels["mIoU"].curves["mIoU"].steps == [10.0, 20.0, 30.0, 40.0]
    out = plot_training_curves(_write(tmp_path / "scalars.json", _iter_run()), tmp_path / "c.png")
    assert Image.open(out).size[0] > 0


def test_epoch_run_logging_metrics_by_iteration_is_labelled_by_iteration():
    from vistra.visualization.curves import _panels

    records = [r if "iter" in r else {**r, "step": r["step"] * 10} for r in _epoch_run(10, 2)]
    panels = {p.title: p for p in _panels(split_records(records))}
    assert panels["accuracy/top1"].xlabel == "iteration"
