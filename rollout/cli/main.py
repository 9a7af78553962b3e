"""The entry point: runs the click group and maps errors to exit codes, in one place."""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

import click

from rollout.cli.base import DATA_DIR, cli
from rollout.errors import ExitCode, RolloutError
from rollout.fsio import write_atomic
from rollout.paths import PRIVATE_UMASK, DataDir, default_data_dir, private_dir


def _crash_report(exc: BaseException) -> Path | None:
    data = DataDir(DATA_DIR.get() or default_data_dir())
    try:
        data.ensure_root()
        base = private_dir(data.logs)
        path = base / f"crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
        # A traceback quotes settings and node output: private, like the journal.
        write_atomic(path, "".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


def main(argv: list[str] | None = None) -> None:
    """Run ``rollout ARGV`` and exit with its code. Everything it creates is
    private to the user (umask 077, see :mod:`rollout.paths`); the caller's
    umask is back in place when it returns (tests call this in-process)."""
    saved_umask = os.umask(PRIVATE_UMASK)
    try:
        _main(argv)
    finally:
        os.umask(saved_umask)


def _main(argv: list[str] | None) -> None:
    try:
        cli.main(args=argv, prog_name="rollout", standalone_mode=False)
    except click.exceptions.Abort:
        print("rollout: interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE)
    except RolloutError as exc:
        print(f"rollout: {exc}", file=sys.stderr)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        print("rollout: interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:  # the one catch-all: report, keep the traceback
        path = _crash_report(exc)
        where = f"; the traceback is in {path}" if path else ""
        print(f"rollout: internal error: {type(exc).__name__}: {exc}{where}", file=sys.stderr)
        sys.exit(ExitCode.INTERNAL)
    sys.exit(ExitCode.OK)
