"""``qsupervise``: the command line of the prefork supervisor.

``qsupervise --children 4 --threads 10 --app tasks --queues critical,default,low``
runs a master. The flags are made from :class:`supervisor.config.Config`, one per
setting; admin subcommands hang off the same group (``qsupervise ps``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from .admin import register_admin_commands
from .config import (
    SETTINGS,
    Config,
    ConfigError,
    configure_logging,
    flag_name,
    load_config,
    setting_type,
)
from .master import EXIT_USAGE, VERSION, Arbiter, StartupError


def _settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """One click option per setting; every default is None so we know what was given."""
    for f in reversed(SETTINGS):
        decls = [flag_name(f.name)]
        if f.metadata.get("short"):
            decls.insert(0, f.metadata["short"])
        default = f.default if f.default is not None else "none"
        func = click.option(
            *decls,
            f.name,
            type=setting_type(f.name),
            default=None,
            metavar=f.metadata.get("metavar"),
            help=f"{f.metadata['help']} [default: {default}]",
        )(func)
    return func


def _fail(message: str, code: int) -> None:
    click.echo(f"qsupervise: error: {message}", err=True)
    sys.exit(code)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@_settings_options
@click.version_option(VERSION, prog_name="qsupervise")
@click.pass_context
def cli(ctx: click.Context, /, **options: Any) -> None:
    """Run a prefork master: N children x M threads serving Redis queues.

    Signals: TERM drains, INT/QUIT stop fast, HUP reloads code and config,
    TTIN/TTOU add/remove a child, USR1 reopens log files.
    """
    ctx.obj = options
    if ctx.invoked_subcommand is not None:
        return
    try:
        config = load_config(options)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
        return

    def reload_config() -> Config:
        return load_config(options, os.environ)

    configure_logging(config)
    arbiter = Arbiter(config, reload_config=reload_config)
    try:
        code = arbiter.run()
    except StartupError as exc:
        _fail(str(exc), exc.code)
        return
    sys.exit(code)


register_admin_commands(cli)


def main() -> None:
    cli(prog_name="qsupervise")


if __name__ == "__main__":
    main()
