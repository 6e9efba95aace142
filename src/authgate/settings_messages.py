"""Settings problems told in the operator's words: the variable or config-file key they
typed, not pydantic's field path, on one line; and the ``AUTHGATE_*`` variables nothing
reads (a typo is otherwise silently ignored), with the closest real name.

Pure functions: the caller passes the environment (see ``authgate.settings``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import SettingsError

ENV_PREFIX = "AUTHGATE_"
# Read by the other programs of the project (authgate-client, authgate.guard) or by the
# test suite, not by the server: never "unknown".
OTHER_PROGRAMS_VARIABLES = frozenset(
    {
        "AUTHGATE_URL",
        "AUTHGATE_USERNAME",
        "AUTHGATE_PASSWORD",
        "AUTHGATE_API_KEY",
        "AUTHGATE_API_KEY_HEADER",
        "AUTHGATE_CA_BUNDLE",
        "AUTHGATE_CLIENT_CONFIG_DIR",
        "AUTHGATE_TIMEOUT",
        "AUTHGATE_LOCAL_JWT_MAX_AGE",
    }
)
OTHER_PROGRAMS_PREFIXES = ("AUTHGATE_TEST_",)


def variable_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def unknown_variables(
    variables: Mapping[str, str], fields: Collection[str], *, also_known: Iterable[str] = ()
) -> list[str]:
    """One warning per ``AUTHGATE_*`` variable that no setting reads, with the closest
    known name when there is one (``AUTHGATE_TOKEN_TTL``: did you mean
    ``AUTHGATE_TOKEN_TTL_SECONDS``?)."""
    known = {variable_name(field) for field in fields} | set(also_known)
    candidates = sorted(known)
    warnings = []
    for name in sorted(variables):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        if upper in OTHER_PROGRAMS_VARIABLES or upper.startswith(OTHER_PROGRAMS_PREFIXES):
            continue
        guess = difflib.get_close_matches(upper, candidates, n=1, cutoff=0.6)
        hint = f"; did you mean {guess[0]}?" if guess else ""
        warnings.append(f"unknown variable {name} is ignored{hint}")
    return warnings


def describe_validation_error(
    error: ValidationError,
    *,
    variables: Mapping[str, str],
    fields: Collection[str],
    renamed: Mapping[tuple[str, str], str],
    config_file: Path | None,
) -> str:
    """One line naming each refused value by where it came from: the variable
    (``AUTHGATE_PORT``), else the config file's key, with pydantic's reason."""
    problems = [
        _describe(
            detail, variables=variables, fields=fields, renamed=renamed, config_file=config_file
        )
        for detail in error.errors(include_url=False, include_input=False)
    ]
    return "; ".join(problems)


def _describe(
    detail: ErrorDetails,
    *,
    variables: Mapping[str, str],
    fields: Collection[str],
    renamed: Mapping[tuple[str, str], str],
    config_file: Path | None,
) -> str:
    message = detail["msg"].removeprefix("Value error, ")
    location = detail["loc"]
    if not location:
        return f"invalid settings: {_in_their_words(message, variables, fields, config_file)}"
    field, rest = str(location[0]), location[1:]
    # A nested setting is named by its flat name (login.ip_window: login_ip_window_seconds),
    # an unknown key of a group's table by its path (login.ip_windw).
    if len(location) > 1:
        path = (field, str(location[1]))
        if path in renamed:
            field, rest = renamed[path], location[2:]
        elif len(location) == 2 and any(field == group for group, _ in renamed):
            field, rest = ".".join(path), ()  # a key of the group's table nothing reads
    inner = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in rest)
    if detail["type"] == "extra_forbidden" and not inner:
        where = f" in {config_file}" if config_file is not None else ""
        group, _, key = field.rpartition(".")
        if group:  # a key of a group's table: the table's own keys, as written there
            keys = sorted(name for table, name in renamed if table == group)
            guess = difflib.get_close_matches(key.lower(), keys, n=1, cutoff=0.6)
            hint = f"; did you mean {guess[0]} (in [{group}])?" if guess else ""
        else:
            guess = difflib.get_close_matches(field.lower(), sorted(fields), n=1, cutoff=0.6)
            hint = f"; did you mean {guess[0]}?" if guess else ""
        return f"unknown setting {field!r}{where}{hint}"
    variable = variable_name(field)
    if config_file is not None and not any(name.upper() == variable for name in variables):
        source = f"{field}{inner} in {config_file}"
    else:
        source = f"{variable}{inner}"
    return f"invalid {source}: {message}"


# A setting's name in a message about several settings: the names of more than one word.
_SETTING_WORD = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]*\b")


def _in_their_words(
    message: str, variables: Mapping[str, str], fields: Collection[str], config_file: Path | None
) -> str:
    """A message about several settings (the model's own checks, which name them by
    field) naming them as variables (``AUTHGATE_TFA_UNENROLLED``), unless the settings
    come from a config file and none of those named was given as a variable: then by
    the file's keys, as written there."""
    given = {name.upper() for name in variables}
    named = [word for word in _SETTING_WORD.findall(message) if word in fields]
    if config_file is not None and not any(variable_name(word) in given for word in named):
        return message
    return _SETTING_WORD.sub(
        lambda match: variable_name(match[0]) if match[0] in fields else match[0], message
    )


_SETTINGS_ERROR_FIELD = re.compile(r'field "(\w+)"')


def describe_settings_error(error: SettingsError) -> str:
    """pydantic-settings' refusal of a variable it decodes as JSON itself (a group's
    own name, ``AUTHGATE_LOGIN``), on one line naming the variable."""
    found = _SETTINGS_ERROR_FIELD.search(str(error))
    source = variable_name(found[1]) if found else "settings"
    reason = f" ({error.__cause__})" if error.__cause__ is not None else ""
    return f"invalid {source}: not JSON{reason}"
