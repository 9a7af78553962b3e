"""The entry point: runs the click group and maps errors to exit codes, in one place."""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

import click

from rollout.app.workspace import default_data_dir
from rollout.cli.base import DATA_DIR, cli
from rollout.errors import ExitCode, RolloutError


def _crash_report(exc: BaseException) -> Path | None:
    base = (DATA_DIR.get() or default_data_dir()) / "logs"
    try:
        base.mkdir(parents=True, exist_ok=True)
        path = base / f"crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
        path.write_text("".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


def main(argv: list[str] | None = None) -> None:
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
