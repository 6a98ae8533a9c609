"""Render service files from the jinja2 templates, escaping values for their format."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from giskard.errors import InstallerError, UsageError

_FORBIDDEN_IN_SYSTEMD_EXECUTABLE = set("\"'\\")


def systemd_text(value: str) -> str:
    """A value in a setting where systemd expands specifiers (%h, %n...)."""
    _refuse_control(value)
    return value.replace("%", "%%")


def systemd_quote(value: str) -> str:
    """One double-quoted word for Environment=: systemd unescapes \\ and \" and expands
    %-specifiers there, so those are escaped; `$` has no special meaning in Environment=."""
    _refuse_control(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def _quote_exec_word(value: str) -> str:
    # ExecStart= also expands $VARIABLES: `$$` is a literal dollar.
    return systemd_quote(value).replace("$", "$$")


def systemd_command(argv: Sequence[str]) -> str:
    """ExecStart= for argv. systemd refuses an executable path with quotes or backslashes
    whatever the escaping; such a path is handed to /usr/bin/env as an ordinary argument."""
    executable, *args = argv
    if _FORBIDDEN_IN_SYSTEMD_EXECUTABLE & set(executable):
        executable, args = "/usr/bin/env", [executable, *args]
    return " ".join(_quote_exec_word(word) for word in (executable, *args))


def one_line(value: str) -> str:
    """A value for a comment line, where nothing is expanded."""
    _refuse_control(value)
    return value


def _refuse_control(value: str) -> None:
    # Unit files are lines of text: a line break would start a new setting, and other
    # control characters reach terminals verbatim through `systemctl cat`.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise UsageError(f"cannot write {value!r} into a service file: it has a control character")


def render(template_name: str, context: Mapping[str, Any]) -> str:
    """Render a template of giskard/service_templates; a missing value is an error."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("giskard", "service_templates"),
        undefined=jinja2.StrictUndefined,
        # XML escaping for plists; systemd values go through the filters above.
        autoescape=jinja2.select_autoescape(enabled_extensions=("plist.j2",)),
        keep_trailing_newline=True,
    )
    environment.filters.update(
        systemd_text=systemd_text,
        systemd_quote=systemd_quote,
        systemd_command=systemd_command,
        one_line=one_line,
    )
    try:
        return environment.get_template(template_name).render(context)
    except jinja2.UndefinedError as exc:
        raise InstallerError(f"service template {template_name}: {exc}") from None
