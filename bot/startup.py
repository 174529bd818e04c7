"""Start-up problems a user can cause, each told in one line that names the setting to fix.

``siyu`` (:func:`bot.cli.main`) turns these into a short message and exit status 2 instead of a
traceback: a setting with bad JSON or an invalid value (one line per bad setting, named by its
``SIYU_*`` variable, in the environment or in ``.env``), a data dir that cannot be written
(``SIYU_DATA_DIR``), and a web address already in use (``SIYU_WEB_HOST`` / ``SIYU_WEB_PORT``,
raised by :mod:`bot.cli` as a :class:`~bot.errors.ConfigError`). Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import SettingsError

from bot.errors import ConfigError
from bot.settings import Settings

ENV_PREFIX = "SIYU_"
_FIELD = re.compile(r'field "(\w+)" from source "(\w+)"')


def check_env_file(path: Path = Path(".env")) -> None:
    """Raise :class:`ConfigError` unless ``path`` is absent or a readable UTF-8 text file.

    Checked before anything reads it: chromadb loads ``.env`` when it is imported, so a ``.env``
    saved as GBK (an editor's default on Chinese Windows) would otherwise end in a traceback."""
    if not path.exists():
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror or exc}): fix or remove it") from exc
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path} line {line} is not UTF-8 text: save the file as UTF-8") from exc


def env_name(field: str) -> str:
    """The environment variable that sets ``field`` (``data_dir`` → ``SIYU_DATA_DIR``); a
    section's field is already named by its variable (``SIYU_WEB_PORT``)."""
    name = field.upper()
    return name if name.startswith(ENV_PREFIX) else ENV_PREFIX + name


def check_data_dir(path: Path) -> None:
    """Raise :class:`ConfigError` unless ``path`` is (or can be made) a writable folder."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(
            f"the data dir {path} is not writable ({exc.strerror or exc}): "
            f"set {env_name('data_dir')} to a folder Siyu may write to"
        ) from exc


def settings_problems(exc: ValidationError | SettingsError) -> list[str]:
    """One line per bad setting, each naming its environment variable."""
    if isinstance(exc, SettingsError):
        return [_unparsable(exc)]
    lines = []
    for error in exc.errors():
        if not error["loc"]:  # a rule across settings: its message names them
            lines.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        field, *inner = error["loc"]
        where = f" (at {'.'.join(map(str, inner))})" if inner else ""
        value = error.get("input")
        shown = f" — got {value!r}" if isinstance(value, str | int | float) and not inner else ""
        lines.append(f"{env_name(str(field))}{where}: {error['msg']}{shown}")
    return lines


def _unparsable(exc: SettingsError) -> str:
    match = _FIELD.search(str(exc))
    if match is None:
        return str(exc)
    field, source = match.groups()
    field = Settings.env_name(field) or field
    where = " in .env" if source.startswith("DotEnv") else ""
    cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
    return f"{env_name(field)}{where}: not valid JSON{cause}"
