"""Free-port choice and busy-port checks for the rendezvous port.

Used by ``init_dist`` (Slurm/MPI, where rank 0 hosts the store) and by
``tools/dist_*.sh`` before torchrun starts (run as a file, without importing torch), so a busy
port is reported at once with the variable that sets it, instead of a traceback or a hang.
"""

from __future__ import annotations

import argparse
import socket
import sys


class PortInUseError(RuntimeError):
    """The rendezvous port is taken; the message names the setting to change."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a listening socket could bind ``port`` on all interfaces (as the store does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR as TCPStore sets it: a port in TIME_WAIT counts as free, a listener not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def ensure_port_free(port: int, set_by: str, hint: str = "") -> None:
    """Raise :class:`PortInUseError` naming ``set_by`` when ``port`` cannot be bound."""
    hint = hint or f"set {set_by} to another port"
    if not 0 < port < 65536:
        raise PortInUseError(f"rendezvous port {port} ({set_by}) is not in 1..65535; {hint}")
    if not port_is_free(port):
        raise PortInUseError(
            f"rendezvous port {port} ({set_by}) is already in use on {socket.gethostname()}, "
            f"probably by another job; {hint}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="vistra/dist/ports.py",
        description="Print a free port, or check that PORT is free (exit 1 with a message if not).",
    )
    p.add_argument("port", nargs="?", type=int, help="port to check; omit to print a free one")
    p.add_argument("--set-by", default="PORT", help="the variable that set PORT, for the message")
    p.add_argument("--hint", default="", help="how to change it, for the message")
    args = p.parse_args(argv)
    if args.port is None:
        print(free_port())
        return 0
    try:
        ensure_port_free(args.port, args.set_by, args.hint)
    except PortInUseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
