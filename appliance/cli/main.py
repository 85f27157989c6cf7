"""`vigatra`: the root command. Subcommands load lazily, so `--help` works with a broken config."""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

from appliance import __version__
from appliance.cli.common import CliState

COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("appliance.cli.setup", "init"),
    "doctor": ("appliance.cli.doctor", "doctor"),
    "db": ("appliance.cli.setup", "db"),
    "serve": ("appliance.cli.ops", "serve"),
    "demo": ("appliance.cli.demo", "demo"),
    "sim": ("appliance.cli.ops", "sim"),
    "routes": ("appliance.cli.ops", "routes"),
    "egress": ("appliance.cli.ops", "egress"),
    "user": ("appliance.cli.users", "user"),
    "role": ("appliance.cli.users", "role"),
    "apikey": ("appliance.cli.users", "apikey"),
    "keys": ("appliance.cli.keys", "keys"),
    "backup": ("appliance.cli.backup", "backup"),
    "audit": ("appliance.cli.audit", "audit"),
    "reports": ("appliance.cli.reports", "reports"),
    "employee": ("appliance.cli.employees", "employee"),
    "onboard": ("appliance.cli.employees", "onboard"),
    "import": ("appliance.cli.imports", "import_group"),
    "poll": ("appliance.cli.ops", "poll"),
    "prices": ("appliance.cli.prices", "prices"),
    "roster": ("appliance.cli.roster", "roster"),
    "status": ("appliance.cli.ops", "status"),
    "rules": ("appliance.cli.rules", "rules"),
    "mail": ("appliance.cli.rules", "mail"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module = importlib.import_module(target[0])
        command: click.Command = getattr(module, target[1])
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", envvar="VIGATRA_CONFIG", type=click.Path(dir_okay=False),
              help="Configuration file (default: $VIGATRA_CONFIG, then /etc/vigatra/vigatra.yaml).")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(__version__, prog_name="vigatra")
@click.pass_context
def cli(ctx: click.Context, config: str | None, debug: bool) -> None:
    """Vigatra appliance administration."""
    ctx.obj = CliState(config=config, debug=debug)
    from appliance.logs import configure

    configure(level=logging.DEBUG if debug else logging.WARNING, fmt="text")


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="vigatra")


if __name__ == "__main__":
    main()
