"""The ``maintd`` command line. It alone owns exit codes and stderr (STYLE.md 10).

Exit codes: 0 ok; 1 the daemon refused (4xx); 2 invalid config or usage; 3 the daemon
cannot be reached; 75 (EX_TEMPFAIL) ``exec`` denied by the gate.

``offline`` holds the commands that need no daemon, ``client`` those that talk to it
(finding it through ``settings``), ``tables`` the terminal rendering.
"""

from __future__ import annotations

import os
import sys

import click

from ..errors import ConfigError, MaintdError
from . import client, offline
from . import integrations as integrations_cli
from .common import DEFAULT_CONFIG, Duration, clock, parse_time

__all__ = ["DEFAULT_CONFIG", "Duration", "cli", "clock", "main", "parse_time"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    envvar="MAINTD_CONFIG",
    show_default=True,
    show_envvar=True,
    help="Path of windows.yaml.",
)
@click.option("--url", default=None, envvar="MAINTD_URL", help="Base URL of the daemon for client commands.")
@click.version_option(package_name="maintd")
@click.pass_context
def cli(ctx: click.Context, config_path: str, url: str | None) -> None:
    """maintd — planned maintenance for service providers.

    Declare windows in windows.yaml; maintd tells tenants in advance, gates and drains
    their jobs while a window runs, and shows where everything stands.
    """
    ctx.ensure_object(dict)
    source = ctx.get_parameter_source("config_path")
    explicit = source is not None and source != click.core.ParameterSource.DEFAULT
    # a --config after the command is parsed later and wins (_config_here)
    ctx.obj["config"] = config_path
    ctx.obj["config_explicit"] = explicit
    ctx.obj["url"] = url


for _command in (*offline.COMMANDS, *client.COMMANDS, *integrations_cli.COMMANDS):
    cli.add_command(_command)


def _config_here(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(dict)
        ctx.obj["config"] = value  # the group's dict: every layer of the command sees it
        ctx.obj["config_explicit"] = True


# `--config` is global (`maintd --config x validate`), and people also write it after the
# command (`maintd validate --config x`): accept it in both places.
for _command in cli.commands.values():
    _command.params.insert(
        0,
        click.Option(
            ["--config"],
            default=None,
            expose_value=False,
            is_eager=True,
            callback=_config_here,
            metavar="PATH",
            help="Path of windows.yaml (same as the global option).",
        ),
    )


def main(argv: list[str] | None = None) -> None:
    """Console script: the one place that prints ``Error: ...`` and exits."""
    try:
        rv = cli.main(args=argv, prog_name="maintd", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:  # usage errors: click's own message, exit 2
        exc.show()
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        code = 130
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        missing = len(exc.issues) == 1 and "no such file" in exc.issues[0].message
        click.echo(
            "Error: no config file" if missing else "Error: invalid config (run `maintd validate` for details)",
            err=True,
        )
        code = exc.exit_code
    except MaintdError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # `maintd plan --json | head`: end quietly, and keep Python from complaining at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
