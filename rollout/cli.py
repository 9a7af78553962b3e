"""The command line: a thin layer that packs options and calls the library.

Errors are mapped to exit codes in exactly one place, :func:`main`.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from rollout import names
from rollout.errors import ConfigError, ExitCode, RolloutError
from rollout.output import Output
from rollout.workspace import Workspace

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    project: Path | None
    data_dir: Path | None
    env: str
    output: str

    def workspace(self) -> Workspace:
        return Workspace.open(self.project, self.env, self.data_dir)

    def out(self) -> Output:
        return Output(self.output)


pass_options = click.make_pass_decorator(Options)


def common(func: F) -> F:
    """--env and --output on every command, so they can follow the subcommand."""

    @click.option("--env", "env", default=None, help="Environment (inventories/ENV). [lab]")
    @click.option("--output", "output", type=click.Choice(["text", "json"]), default=None,
                  help="text for people, json for scripts (one event per line).")
    @functools.wraps(func)
    def wrapper(*args: Any, env: str | None, output: str | None, **kwargs: Any) -> Any:
        opts = click.get_current_context().find_object(Options)
        assert opts is not None
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
@click.option("--env", default="lab", envvar="ROLLOUT_ENV", show_default=True,
              help="Environment (inventories/ENV).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.version_option(package_name="rollout")
@click.pass_context
def cli(ctx: click.Context, project: Path | None, data_dir: Path | None, env: str,
        output: str) -> None:
    """Phoenix rollouts of immutable, Ansible-baked images behind a load balancer.

    \b
    Exit codes: 0 ok; 1 failed and restored; 2 usage or config error;
    3 pool locked or unfinished rollout; 4 halted, needs resume or abort;
    5 environment problem (root, programs, disk); 70 internal error;
    130 interrupted (pool left safe).
    """
    ctx.obj = Options(project=project, data_dir=data_dir, env=env, output=output)


# -- the lab ---------------------------------------------------------------

@cli.group()
def lab() -> None:
    """The embedded lab: nspawn nodes behind a local HAProxy."""


@lab.command("up")
@click.option("--nodes", type=click.IntRange(1, 64), default=None,
              help="Nodes per pool (default: the pool's pool_size).")
@common
@pass_options
def lab_up(opts: Options, nodes: int | None) -> None:
    """Build or converge the lab: base image, network, HAProxy, the pools."""
    from rollout.lab.env import lab_up as up
    from rollout.lab.system import require_root

    require_root("rollout lab up")
    ws = opts.workspace()
    out = opts.out()
    status = up(ws.project, ws.env, ws.data, nodes=nodes, on_event=out.line)
    _print_lab_status(out, status)


@lab.command("prepare")
@common
@pass_options
def lab_prepare(opts: Options) -> None:
    """Build the base image cache once (debootstrap); later runs reuse it."""
    from rollout.lab.base import ensure_base
    from rollout.lab.system import require_programs, require_root

    require_root("rollout lab prepare")
    require_programs(["debootstrap"])
    ws = opts.workspace()
    path = ensure_base(ws.data)
    opts.out().line(f"base image ready: {path}")


@lab.command("down")
@common
@pass_options
def lab_down(opts: Options) -> None:
    """Remove everything the lab created (nodes, network, NAT rules, HAProxy)."""
    from rollout.lab.env import lab_down as down
    from rollout.lab.system import require_root

    require_root("rollout lab down")
    ws = opts.workspace()
    down(ws.env, ws.data, on_event=opts.out().line)


@lab.command("status")
@common
@pass_options
def lab_status(opts: Options) -> None:
    """Show the nodes, their images, their LB state and the frontend URL."""
    from rollout.lab.env import lab_status as status

    ws = opts.workspace()
    _print_lab_status(opts.out(), status(ws.env, ws.data))


def _print_lab_status(out: Output, status: Any) -> None:
    data = status.to_json()
    if out.json:
        out.document(data)
        return
    out.line(f"frontend: {data['frontend']}")
    rows = [[n["name"], n["address"], str(n["image"]), str(n.get("lb_state", "")),
             str(n.get("state", ""))] for n in data["nodes"]]
    out.table("lab nodes", ["name", "address", "image", "lb", "state"], rows)


# -- images ----------------------------------------------------------------

def _extra_vars(values: tuple[str, ...]) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--extra-var {item!r}: expected KEY=VALUE")
        if not key.isidentifier():
            raise ConfigError(f"--extra-var {item!r}: {key!r} is not a valid variable name")
        result[key] = value
    return result


@cli.command()
@click.option("--role", required=True, help="The role to bake (roles/ROLE).")
@click.option("--version", "version", default=None, help="Image version. [a timestamp]")
@click.option("--parent", default=None, help="Bake on top of this image id.")
@click.option("--extra-var", "extra_vars", multiple=True, metavar="K=V",
              help="An Ansible extra variable (repeatable).")
@click.option("--no-smoke", is_flag=True, help="Skip the smoke gate: the image is unverified.")
@common
@pass_options
def build(opts: Options, role: str, version: str | None, parent: str | None,
          extra_vars: tuple[str, ...], no_smoke: bool) -> None:
    """Bake an image of ROLE with Ansible, smoke-test it and register it."""
    from rollout.bake import bake

    names.name(role, "role", "--role")
    ws = opts.workspace()
    version = version or time.strftime("%Y%m%d.%H%M%S", time.gmtime())
    names.version(version, "--version")
    variables = _extra_vars(extra_vars)
    store = ws.images_for()
    parent_image = store.get(names.image_id(parent, "--parent")) if parent else None
    out = opts.out()
    image = bake(ws.project, ws.env, ws.data, role, version, parent=parent_image,
                 extra_vars=variables, smoke=not no_smoke, on_event=out.line)
    if out.json:
        out.record({"event": "image_registered", "id": image.id, "role": image.role,
                    "version": image.version, "verified": image.verified})
    else:
        out.line(f"registered image {image.id} ({image.role} {image.version}"
                 f"{'' if image.verified else ', UNVERIFIED: baked with --no-smoke'})")


@cli.command()
@click.option("--role", default=None, help="Only this role.")
@common
@pass_options
def images(opts: Options, role: str | None) -> None:
    """List registered images."""
    if role is not None:
        names.name(role, "role", "--role")
    ws = opts.workspace()
    found = ws.images_for().list(role)
    out = opts.out()
    rows = [_image_json(i) for i in found]
    if out.json:
        out.document(rows)
        return
    out.table("images", ["id", "role", "version", "created", "verified", "passed in"],
              [[r["id"], r["role"], r["version"], r["created"], str(r["verified"]),
                ",".join(r["passed_envs"]) or "-"] for r in rows])


def _image_json(image: Any) -> dict[str, Any]:
    manifest = image.manifest or {}
    return {
        "id": image.id,
        "role": image.role,
        "version": image.version,
        "parent": image.parent,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(image.created_at)),
        "verified": image.verified,
        "location": image.location,
        "passed_envs": sorted(manifest.get("passed_envs", [])),
        "promoted_to": sorted(manifest.get("promoted_to", [])),
    }


# -- exit code mapping: the one place ----------------------------------------

def _crash_report(exc: BaseException) -> Path | None:
    base = Path(os.environ.get("ROLLOUT_DATA_DIR") or "/tmp") / "logs"
    try:
        base.mkdir(parents=True, exist_ok=True)
        path = base / f"crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
        path.write_text("".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


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
