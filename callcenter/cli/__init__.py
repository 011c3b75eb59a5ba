"""The `callcenter` command: run, demo, asterisk, db, users (and more as features land). `--help` on each."""

from __future__ import annotations

import click

from callcenter.cli.asterisk_cmd import asterisk
from callcenter.cli.common import pass_context_options
from callcenter.cli.db_cmd import db
from callcenter.cli.flows_cmd import flows
from callcenter.cli.recordings_cmd import recordings
from callcenter.cli.run_cmd import demo, run
from callcenter.cli.users_cmd import users


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@pass_context_options
def main() -> None:
    """The call-center engine for Asterisk."""


main.add_command(run)
main.add_command(demo)
main.add_command(asterisk)
main.add_command(db)
main.add_command(users)
main.add_command(flows)
main.add_command(recordings)
