"""The click group, the shared options and the stop flag every command uses."""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from rollout.app.workspace import Workspace
from rollout.cli.output import Output
from rollout.model import VaultOptions

F = TypeVar("F", bound=Callable[..., Any])

#: The data directory of the running command, for the crash report (the one
#: place that maps errors to exit codes runs after click has returned).
DATA_DIR: ContextVar[Path | None] = ContextVar("rollout_data_dir", default=None)


@dataclass
class Options:
    project: Path | None
    data_dir: Path | None
    env: str
    output: str
    progress: bool = True  # the live view on a terminal (--no-progress: plain lines)
    vault: VaultOptions = field(default_factory=VaultOptions)
    state: str | None = None

    def workspace(self) -> Workspace:
        return Workspace.open(self.project, self.env, self.data_dir, self.vault,
                              state=self.state)

    def out(self) -> Output:
        return Output(self.output)


pass_options = click.make_pass_decorator(Options)


def vault_options(func: F) -> F:
    """ansible-playbook's vault options, for every command that reads an
    inventory or bakes. ANSIBLE_VAULT_PASSWORD_FILE and the project's
    ansible.cfg are read by Ansible itself."""

    @click.option("--vault-password-file", "vault_password_files", multiple=True,
                  metavar="FILE", help="A vault password file (repeatable).")
    @click.option("--vault-id", "vault_ids", multiple=True, metavar="[ID@]SOURCE",
                  help="A vault identity, as for ansible-playbook (repeatable).")
    @functools.wraps(func)
    def wrapper(*args: Any, vault_password_files: tuple[str, ...],
                vault_ids: tuple[str, ...], **kwargs: Any) -> Any:
        opts = click.get_current_context().find_object(Options)
        assert opts is not None
        if vault_password_files or vault_ids:
            opts.vault = VaultOptions(password_files=vault_password_files, vault_ids=vault_ids)
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def common(func: F) -> F:
    """--env, --output and the vault options on every command, so they can
    follow the subcommand."""

    @vault_options
    @click.option("--env", "env", default=None, help="Environment (inventories/ENV). [lab]")
    @click.option("--output", "output", type=click.Choice(["text", "json"]), default=None,
                  help="text for people, json for scripts (one event per line).")
    @click.option("--no-progress", "no_progress", is_flag=True, default=False,
                  help="Plain lines instead of the live view on a terminal.")
    @functools.wraps(func)
    def wrapper(*args: Any, env: str | None, output: str | None, no_progress: bool,
                **kwargs: Any) -> Any:
        opts = click.get_current_context().find_object(Options)
        assert opts is not None
        if no_progress:
            opts.progress = False
        if env is not None:
            opts.env = env
        if output is not None:
            opts.output = output
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--project", type=click.Path(path_type=Path, file_okay=False),
              envvar="ROLLOUT_PROJECT", help="Project directory (holds inventories/ and roles/).")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              envvar="ROLLOUT_DATA_DIR", help="Base cache, images, journal and logs.")
@click.option("--state", "state", default=None, metavar="URL",
              help="Where the journal and leases live: sqlite:///PATH or "
              "postgresql://USER@HOST/DB (password from PGPASSFILE or the libpq "
              "environment). [ROLLOUT_STATE_URL, else the inventory's rollout_env.state, "
              "else DATA_DIR/journal.sqlite]")
@click.option("--env", default="lab", envvar="ROLLOUT_ENV", show_default=True,
              help="Environment (inventories/ENV).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.version_option(package_name="rollout")
@click.pass_context
def cli(ctx: click.Context, project: Path | None, data_dir: Path | None,
        state: str | None, env: str, output: str) -> None:
    """Phoenix rollouts of immutable, Ansible-baked images behind a load balancer.

    \b
    Exit codes: 0 ok; 1 failed and restored; 2 usage or config error;
    3 pool locked or unfinished rollout; 4 halted, needs resume or abort;
    5 environment problem (root, programs, disk); 70 internal error;
    130 interrupted (pool left safe).
    """
    ctx.obj = Options(project=project, data_dir=data_dir, env=env, output=output,
                      state=state)
    DATA_DIR.set(data_dir)



class _Stop:
    """SIGINT/SIGTERM set a flag; the controller stops starting new work."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: int | None = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.signal = signum
        self.event.set()
        print(f"\nrollout: {signal.Signals(signum).name} received: finishing the in-flight "
              "step safely; send it again to stop at once", file=sys.stderr)

    def requested(self) -> bool:
        return self.event.is_set()


STOP = _Stop()


