"""The `lowsim` command line. Each command lives in its own module of this package."""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

import typer

from lowsim.errors import Interrupted, LowsimError, printable
from lowsim.project import command_defaults

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="lowsim",
    help="Calibrate a low-light degradation model on real dark/bright pairs and generate synthetic pairs.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def interruptible(hint: str) -> Callable[[F], F]:
    """Turn Ctrl-C inside a command into "interrupted: <hint>" and exit code 130 (typer alone exits silently)."""
    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except KeyboardInterrupt:
                from lowsim.safe_io import remove_live_temps

                remove_live_temps()
                raise Interrupted(f"interrupted: {hint}") from None
        return wrapper  # type: ignore[return-value]
    return decorate


def _register_commands() -> None:
    # Imported for their side effect of adding commands to `app`.
    import importlib

    for name in ("calibrate", "generate", "compare"):
        importlib.import_module(f"lowsim.cli.{name}")


def _print_version(value: bool) -> None:
    if value:
        from lowsim import __version__

        typer.echo(f"lowsim {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")) -> None:
    """Options before the command."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: a user mistake is one line "error: ..." and exit code 2, never a traceback."""
    _register_commands()
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # lowsim.toml's tables are the commands' defaults (project folder convention, lowsim.project)
        defaults = command_defaults(typer.main.get_command(app), args)
        app(args=args, prog_name="lowsim", default_map=defaults)  # typer reports usage errors itself (exit 2)
    except Interrupted as err:
        typer.secho(printable(str(err)), err=True)
        sys.exit(err.exit_code)
    except LowsimError as err:
        typer.secho(f"error: {printable(str(err))}", err=True, fg=typer.colors.RED)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:  # outside a command (e.g. while importing)
        typer.secho("interrupted", err=True)
        sys.exit(130)
