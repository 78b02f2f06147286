"""``vistra analyze-logs``: finding a run's JSON log, the curves' x axes, MMPretrain's
cal_train_time figures, and the real CLI on a real training run's log."""

from __future__ import annotations

import json
import statistics

import pytest
from e2e_support import run_cli
from PIL import Image
from trained_tiny import trained_segmenter

from vistra.analysis.errors import AnalysisError
from vistra.analysis.logs import curve, find_scalars_json, format_train_time, load_log, train_time


def _run_dir(root, ts, records):
    """A ``<ts>/vis_data/scalars.json`` under ``root``, as a run writes it."""
    path = root / ts / "vis_data" / "scalars.json"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _epoch_log(times_per_epoch, iters_per_line=2, val_step="epoch"):
    """Training lines with the given ``time`` values, epoch by epoch, and a val line each."""
    records, it = [], 0
    lines = len(times_per_epoch[0])
    for epoch, times in enumerate(times_per_epoch, start=1):
        for t in times:
            it += iters_per_line
            records.append(
                {"lr": 0.1, "loss": 1.0 / it, "time": t, "epoch": epoch, "iter": it, "step": it}
            )
        step = epoch if val_step == "epoch" else epoch * lines * iters_per_line
        records.append({"accuracy/top1": 10.0 * epoch, "time": 0.01, "step": step})
    return records


def test_cal_train_time_drops_each_epochs_first_line_unless_told(tmp_path):
    log = load_log(
        _run_dir(tmp_path, "20240101_000000", _epoch_log([[0.5, 0.2, 0.2], [0.4, 0.3, 0.3]]))
    )
    timing = train_time(log)
    assert timing.epoch_means == pytest.approx({1: 0.2, 2: 0.3})
    assert timing.slowest == (2, pytest.approx(0.3)) and timing.fastest == (1, pytest.approx(0.2))
    assert timing.std == pytest.approx(0.05)
    # the overall average is over every line, outliers included (as upstream's)
    assert timing.average == pytest.approx((0.5 + 0.2 + 0.2 + 0.4 + 0.3 + 0.3) / 6)
    with_outliers = train_time(log, include_outliers=True)
    assert with_outliers.epoch_means == pytest.approx({1: 0.3, 2: 1.0 / 3})
    text = format_train_time("x.json", timing)
    assert text.splitlines() == [
        "-----Analyze train time of x.json-----",
        "slowest epoch 2, average time is 0.3000",
        "fastest epoch 1, average time is 0.2000",
        "time std over epochs is 0.0500",
        "average iter time: 0.3167 s/iter",
    ]


def test_iteration_based_logs_report_only_the_average(tmp_path):
    records = [
        {"lr": 0.1, "loss": 1.0, "time": t, "epoch": 0, "iter": i, "step": i}
        for i, t in ((10, 0.3), (20, 0.1))
    ]
    log = load_log(_run_dir(tmp_path, "20240101_000000", records))
    assert not log.by_epoch
    text = format_train_time("x", train_time(log))
    assert "epoch" not in text and "average iter time: 0.2000 s/iter" in text


def test_a_work_dir_means_its_latest_run_and_a_text_log_points_to_the_json(tmp_path):
    older = _run_dir(tmp_path, "20240101_000000", _epoch_log([[0.1]]))
    newer = _run_dir(tmp_path, "20240102_000000", _epoch_log([[0.1]]))
    assert find_scalars_json(tmp_path) == newer
    assert find_scalars_json(older.parent.parent) == older
    assert load_log(tmp_path).label == "20240102_000000"
    text_log = newer.parent.parent / "20240102_000000.log"
    text_log.write_text("")
    with pytest.raises(AnalysisError, match="is the text log; the JSON log of that run is"):
        find_scalars_json(text_log)
    with pytest.raises(AnalysisError, match="no vis_data/scalars.json under"):
        find_scalars_json((tmp_path / "empty").mkdir() or tmp_path / "empty")
    with pytest.raises(AnalysisError, match="log not found"):
        find_scalars_json(tmp_path / "missing")


def test_curves_share_an_epoch_axis(tmp_path):
    records = _epoch_log([[0.1, 0.1], [0.1, 0.1]])  # 4 iterations per epoch
    loss = curve(load_log(_run_dir(tmp_path, "a", records)), "loss", "a_loss")
    assert loss.xs == pytest.approx([0.5, 1.0, 1.5, 2.0])
    top1 = curve(load_log(tmp_path / "a"), "accuracy/top1", "a_top1")
    assert top1.xs == [1.0, 2.0] and top1.ys == [10.0, 20.0]
    # metrics logged by iteration (log_metric_by_epoch=False) land on the same axis
    by_iter = _epoch_log([[0.1, 0.1], [0.1, 0.1]], val_step="iter")
    top1 = curve(load_log(_run_dir(tmp_path, "b", by_iter)), "accuracy/top1", "b")
    assert top1.xs == pytest.approx([1.0, 2.0])


def test_an_unknown_key_lists_the_keys_and_the_closest(tmp_path):
    log = load_log(_run_dir(tmp_path, "a", _epoch_log([[0.1]])))
    with pytest.raises(AnalysisError) as info:
        curve(log, "los", "x")
    message = str(info.value)
    assert "has no key 'los'" in message and "did you mean 'loss'?" in message
    assert "accuracy/top1, loss, lr, time" in message


@pytest.mark.slow
def test_cli_on_a_real_runs_log(tmp_path, capsys):
    work_dir = trained_segmenter().work_dir
    scalars = find_scalars_json(work_dir)
    times = [r["time"] for r in map(json.loads, scalars.read_text().splitlines()) if "lr" in r]
    assert times, "the trained run logged no training lines"

    out = tmp_path / "curves.png"
    plot = run_cli(
        "analyze-logs", "plot_curve", work_dir, "--keys", "loss", "mIoU",
        "--window-size", "6*4", "--title", "seg", "--out", out, cwd=tmp_path,
    )  # fmt: skip
    assert plot.returncode == 0, plot.output
    assert f"plot curve of {scalars}, metric is mIoU" in plot.stdout
    assert Image.open(out).size == (600, 400)  # W*H inches at 100 dpi
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    from vistra.cli.analyze_logs import main

    assert main(["cal_train_time", str(work_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"-----Analyze train time of {scalars}-----\n")
    assert f"average iter time: {statistics.fmean(times):.4f} s/iter" in out


def test_cli_errors_are_one_line(tmp_path, capsys):
    from vistra.cli.analyze_logs import main

    run = _run_dir(tmp_path, "20240101_000000", _epoch_log([[0.1, 0.2]]))
    assert (
        main(["plot_curve", str(tmp_path), "--keys", "los", "--out", str(tmp_path / "x.png")]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "did you mean 'loss'?" in err
    assert main(["plot_curve", str(run), "--window-size", "12x7", "--out", "x.png"]) == 2
    assert "--window-size '12x7' must be W*H" in capsys.readouterr().err
    assert main(["plot_curve", str(run), "--style", "whitegird", "--out", "x.png"]) == 2
    assert "did you mean 'whitegrid'" in capsys.readouterr().err
    assert main(["plot_curve", str(run), "--keys", "loss", "lr", "--legend", "one"]) == 2
    assert "--legend has 1 names; 1 log(s) x 2 key(s) need 2" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(SystemExit):  # argparse's exit, after its one line
        main(["plot_curve", str(run), "--kyes", "loss"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean '--keys'?" in err
