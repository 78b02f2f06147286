"""The error boundary of every command: whatever goes wrong ends in one line on stderr.

``run_reporting_errors(fn)`` runs a command. A user's mistake (a config, a flag, data, a
checkpoint) becomes ``error: <what and where>`` and exit code 2; a failure in the loops
(:class:`vistra.engine.failures.TrainingError`) or anything unexpected becomes one line
and exit code 1, the latter with its exception type and a pointer to ``--debug``. With
``--debug`` or ``VISTRA_DEBUG=1`` the full traceback is printed instead. The line also
goes to the run's log file, when one is open, so the work dir records why the run ended.

torch-free: an error class is only looked for when its module is already imported (an
error of a module never imported cannot have been raised).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from vistra.config.errors import ConfigError, did_you_mean

MAX_LINE = 393  # with `error: ` in front, 400 characters
DEBUG_HINT = "(run with --debug for the traceback)"

# (module, class) of the errors that are a user's mistake, reported without their type
_USER_ERRORS = (
    ("vistra.registry", "RegistryError"),
    ("vistra.cli.common", "UsageError"),
    ("vistra.checkpoint.errors", "CheckpointError"),
    ("vistra.dist.launch", "LaunchError"),
    ("vistra.data.errors", "DataError"),
    ("vistra.model_index", "ModelIndexError"),
    ("vistra.analysis.errors", "AnalysisError"),
    ("vistra.apis.model", "DeviceError"),
)
_RUNTIME_ERRORS = (("vistra.engine.failures", "TrainingError"),)


def debug_enabled() -> bool:
    return os.environ.get("VISTRA_DEBUG", "") not in ("", "0", "false", "False")


class DebugAction(argparse.Action):
    """``--debug``: show full tracebacks (sets ``VISTRA_DEBUG=1`` for this process)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print the full traceback of an error (also VISTRA_DEBUG=1)")
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        os.environ["VISTRA_DEBUG"] = "1"
        setattr(namespace, self.dest, True)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with one ``error:`` line (and a did-you-mean for a misspelt flag)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action=DebugAction)

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments: "):
            unknown = message.split(": ", 1)[1].split()
            flags = [s for a in self._actions for s in a.option_strings]
            first = next((u for u in unknown if u.startswith("-")), unknown[0])
            hint = did_you_mean(first.split("=", 1)[0], flags)
            message = f"unrecognized arguments: {' '.join(unknown)}.{hint}"
        print(f"error: {self.prog}: {message} ({self.prog} -h lists the flags)", file=sys.stderr)
        raise SystemExit(2)


def run_reporting_errors(fn: Callable[[], Any]) -> int:
    """Run a command; any error becomes one clear line on stderr (see the module doc)."""
    try:
        fn()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug_enabled():
            traceback.print_exc()
        lines, code = describe(exc)
        for line in lines:
            print(f"error: {line}", file=sys.stderr, flush=True)
        _log_to_file(lines)
        return code
    return 0


def describe(exc: BaseException) -> tuple[list[str], int]:
    """The lines (without ``error:``) and the exit code for ``exc``."""
    problems = getattr(exc, "problems", None)
    if problems:  # a pre-flight report: every problem found, one line each
        return [one_line(p) for p in problems], 2
    if _is(exc, _RUNTIME_ERRORS):
        return [one_line(str(exc))], 1
    if (
        isinstance(exc, ConfigError)
        or _is(exc, _USER_ERRORS)
        or getattr(exc, "vistra_build_error", False)  # a constructor rejected a config value
    ):
        return [one_line(_message(exc))], 2
    if isinstance(
        exc, FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError
    ):
        if exc.filename is not None:  # the OS's own words, and the path they are about
            return [one_line(f"{exc.strerror or exc}: {exc.filename!r}")], 2
        return [one_line(str(exc))], 2
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return [one_line(f"out of memory: {_message(exc)}; lower the batch size or use --amp")], 1
    text = one_line(f"{type(exc).__name__}: {_message(exc)}", MAX_LINE - len(DEBUG_HINT) - 1)
    return [f"{text} {DEBUG_HINT}"], 1


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """``text`` on one line, cut in the middle to ``limit`` characters (the start names
    the problem, the end usually says what to do)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    text = "; ".join(lines)
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return text[:head] + " ... " + text[-(limit - head - 5) :]


def _message(exc: BaseException) -> str:
    """The message; for an error re-raised from a dataloader worker, its original last line."""
    text = str(exc)
    if "Original Traceback" in text:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return lines[-1].split(": ", 1)[-1] if lines else text
    if isinstance(exc, KeyError) and type(exc) is KeyError and exc.args:
        return f"key {exc.args[0]!r} not found"
    return text


def _is(exc: BaseException, names: tuple[tuple[str, str], ...]) -> bool:
    for module, name in names:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return True
    return False


def _log_to_file(lines: list[str]) -> None:
    """Append the error to the run's log file (not to the console: it is printed already).
    A log that cannot be written (a full disk) must not bury the error under logging's
    own traceback, so the line is written directly and a failure is ignored."""
    for handler in logging.getLogger("vistra").handlers:
        if isinstance(handler, logging.FileHandler):
            for line in lines:
                record = logging.LogRecord("vistra", logging.ERROR, __file__, 0, line, None, None)
                try:
                    stream = handler.stream or handler._open()
                    stream.write(handler.format(record) + handler.terminator)
                    stream.flush()
                except Exception:
                    pass
