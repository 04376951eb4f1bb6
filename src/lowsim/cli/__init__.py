"""The `lowsim` command line. Each command lives in its own module of this package."""
from __future__ import annotations

import sys

import typer

from lowsim.errors import LowsimError

app = typer.Typer(
    name="lowsim",
    help="Calibrate a low-light degradation model on real dark/bright pairs and generate synthetic pairs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    # Imported for their side effect of adding commands to `app`; a missing module means that
    # command is not built yet, which must not break the others.
    import importlib

    for name in ("calibrate", "generate"):
        importlib.import_module(f"lowsim.cli.{name}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turn LowsimError into a one-line message and exit code 2."""
    _register_commands()
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code != 0:  # typer.Exit(code) in non-standalone mode
            sys.exit(code)
    except LowsimError as err:
        typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted: run the same command again to resume", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as err:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Abort):
            sys.exit(1)
        raise
