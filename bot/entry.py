"""The ``siyu`` console script: checks what is read before any import, then runs the CLI.

chromadb reads ``.env`` as it is imported (long before :func:`bot.cli.main` runs), so a ``.env``
that is not UTF-8 has to be caught here, with the same one line and exit status 2 as every other
start-up problem (:mod:`bot.startup`).
"""

from __future__ import annotations

import sys

from bot.errors import ConfigError
from bot.startup import check_env_file


def main() -> None:
    try:
        check_env_file()
    except ConfigError as exc:
        print(f"siyu: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    from bot.cli import main as cli_main  # imported after the check, on purpose

    cli_main()
