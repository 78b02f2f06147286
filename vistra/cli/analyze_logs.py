"""``vistra analyze-logs plot_curve|cal_train_time LOG...``: MMPretrain's analyze_logs.py.

A LOG is a run's ``vis_data/scalars.json``, its ``<ts>`` folder or a work dir (the
latest run in it).
"""

from __future__ import annotations

import argparse

from vistra.cli.errors import ArgumentParser, run_reporting_errors


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="vistra analyze-logs", description="Analyze JSON training logs.")
    tasks = p.add_subparsers(dest="task", required=True, metavar="{plot_curve,cal_train_time}")
    plot = tasks.add_parser("plot_curve", help="plot keys of one or more logs")
    _add_logs(plot)
    plot.add_argument(
        "--keys", nargs="+", default=["loss"], help="the keys to plot (default: loss)"
    )
    plot.add_argument("--title", help="title of the figure")
    plot.add_argument(
        "--legend", nargs="+", default=None, help="one name per log and key (default <run>_<key>)"
    )
    plot.add_argument(
        "--style",
        default="whitegrid",
        help="darkgrid, whitegrid, dark, white, ticks or any matplotlib style (no seaborn needed)",
    )
    plot.add_argument("--out", help="write the figure to this PNG (default: show a window)")
    plot.add_argument("--window-size", default="12*7", help="figure size W*H in inches")
    timing = tasks.add_parser(
        "cal_train_time",
        help="average time per training iteration",
    )
    _add_logs(timing)
    timing.add_argument(
        "--include-outliers",
        action="store_true",
        help="keep the first logged time of every epoch in the epoch averages",
    )
    return p


def _add_logs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "json_logs",
        nargs="+",
        metavar="JSON_LOGS",
        help="vis_data/scalars.json files, run (<timestamp>) folders or work dirs",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse; a misspelt flag is reported by its sub-command's parser, whose flags the
    did-you-mean then searches (argparse hands unknown flags up to the top parser)."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        tasks = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        tasks.choices[args.task].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def run() -> None:
        from vistra.analysis import logs as L

        runs = L.load_logs(args.json_logs)
        if args.task == "cal_train_time":
            for run_log in runs:
                timing = L.train_time(run_log, args.include_outliers)
                print(L.format_train_time(str(run_log.path), timing))
            return
        size = L.window_size(args.window_size)
        curves = L.plot_curves(runs, args.keys, args.out, args.legend, args.title, args.style, size)
        for c in curves:
            print(f"plot curve of {c.source}, metric is {c.key}")
        if args.out:
            print(f"save curve to: {args.out}")

    return run_reporting_errors(run)


if __name__ == "__main__":
    raise SystemExit(main())
