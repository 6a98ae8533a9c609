"""launchd agents (macOS): ~/Library/LaunchAgents/<label>.plist, managed with launchctl.

launchd never rotates logs, so the worker writes its own size-bounded log file and the
agent's stdout/stderr file only catches what happens before logging starts.
"""

from __future__ import annotations

import os
import plistlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from xml.parsers.expat import ExpatError

from giskard.errors import FATAL_EXIT_CODE_ENV, InstallerError
from giskard.installer.base import Action, Backend, InstallOutcome, ServiceSpec, ServiceStatus
from giskard.installer.commands import Result, run_tool
from giskard.installer.files import follow_file, read_tail, write_atomically
from giskard.installer.naming import LAUNCHD_PREFIX, launchd_label, name_of_label
from giskard.installer.render import render
from giskard.installer.systemd import ServiceFailedError
from giskard.paths import worker_log_path

Runner = Callable[[Sequence[str]], Result]


def _run(argv: Sequence[str]) -> Result:
    return run_tool(argv, timeout_s=30)


class LaunchdBackend(Backend):
    name = "launchd"

    def __init__(
        self,
        runner: Runner = _run,
        home: Path | None = None,
        uid: int | None = None,
        gui: bool | None = None,
    ) -> None:
        self._runner = runner
        self.agents_dir = (home or Path.home()) / "Library" / "LaunchAgents"
        self.uid = os.getuid() if uid is None else uid
        self._gui = gui

    @property
    def domain(self) -> str:
        """gui/UID when this user owns the console (a GUI login), else user/UID (SSH)."""
        gui = self._gui
        if gui is None:
            try:
                gui = os.stat("/dev/console").st_uid == self.uid
            except OSError:
                gui = False
        return f"gui/{self.uid}" if gui else f"user/{self.uid}"

    def plist_path(self, name: str) -> Path:
        return self.agents_dir / f"{launchd_label(name)}.plist"

    def render_plist(self, spec: ServiceSpec) -> str:
        return render(
            "launchd.plist.j2",
            {
                "label": launchd_label(spec.name),
                "argv": spec.argv(log_to_stderr=False),
                "home": spec.home,
                # launchd restarts any non-zero exit (it has no RestartPreventExitStatus):
                # a fatal configuration error must end in 0 there, or it loops forever.
                "environment": {**spec.environment(), FATAL_EXIT_CODE_ENV: "0"},
                "output_path": str(Path(spec.giskard_home) / "run" / f"{spec.name}.launchd.out"),
            },
        )

    def install(self, spec: ServiceSpec) -> InstallOutcome:
        path, text = self.plist_path(spec.name), self.render_plist(spec)
        previous_text = path.read_text() if path.exists() else None
        target = self._target(spec.name)
        loaded = self._launchctl("print", target)
        if previous_text == text and loaded.ok and _field(loaded.stdout, "state") == "running":
            return InstallOutcome(Action.UNCHANGED, pid=_pid(loaded.stdout))
        # launchd does not create the directory of StandardOutPath.
        (Path(spec.giskard_home) / "run").mkdir(parents=True, exist_ok=True)
        write_atomically(path, text, mode=0o644)
        if loaded.ok:
            self._launchctl("bootout", target)
        self._launchctl("enable", target, check=True)
        bootstrap = self._launchctl("bootstrap", self.domain, str(path))
        if not bootstrap.ok:
            raise ServiceFailedError(
                f"launchctl bootstrap failed: {bootstrap.first_error_line()}"
                " (error 5 usually means no GUI session: log in on the Mac, or use SSH's"
                " user domain)",
                read_tail(worker_log_path(), 15),
            )
        previous = _interpreter_of(previous_text)
        action = Action.INSTALLED if previous_text is None else Action.UPDATED
        if previous and previous != spec.interpreter:
            action = Action.REBOUND
        return InstallOutcome(action, _pid(self._launchctl("print", target).stdout), previous)

    def stop(self, name: str) -> bool:
        path = self.plist_path(name)
        loaded = self._launchctl("print", self._target(name)).ok
        if loaded:
            self._launchctl("bootout", self._target(name), check=True)
        existed = loaded or path.exists()
        path.unlink(missing_ok=True)
        return existed

    def restart(self, name: str) -> None:
        self._launchctl("kickstart", "-k", self._target(name), check=True)

    def status(self, name: str) -> ServiceStatus | None:
        path = self.plist_path(name)
        printed = self._launchctl("print", self._target(name))
        if not printed.ok and not path.exists():
            return None
        text = path.read_text() if path.exists() else ""
        state = _field(printed.stdout, "state") if printed.ok else "not loaded"
        return ServiceStatus(
            backend=self.name,
            name=name,
            state="running" if state == "running" else "stopped",
            pid=_pid(printed.stdout),
            interpreter=_interpreter_of(text),
            detail="" if path.exists() else "orphan: loaded, but its plist is gone",
        )

    def names(self) -> list[str]:
        labels = {p.stem for p in self.agents_dir.glob(f"{LAUNCHD_PREFIX}*.plist")}
        listed = self._launchctl("list")
        labels |= {
            line.split()[-1] for line in listed.stdout.splitlines() if LAUNCHD_PREFIX in line
        }
        return sorted(name_of_label(label) for label in labels)

    def log_lines(self, name: str, lines: int) -> list[str]:
        return read_tail(worker_log_path(), lines)

    def follow_logs(self, name: str, lines: int) -> int:
        return follow_file(worker_log_path(), lines)

    def _target(self, name: str) -> str:
        return f"{self.domain}/{launchd_label(name)}"

    def _launchctl(self, *args: str, check: bool = False) -> Result:
        result = self._runner(["launchctl", *args])
        if check and not result.ok:
            raise InstallerError(f"launchctl {args[0]} failed: {result.first_error_line()}")
        return result


def _field(printed: str, key: str) -> str | None:
    match = re.search(rf"^\s*{key} = (.+)$", printed, re.MULTILINE)
    return match.group(1).strip() if match else None


def _pid(printed: str) -> int | None:
    value = _field(printed, "pid")
    return int(value) if value and value.isdigit() else None


def _interpreter_of(plist_text: str | None) -> str | None:
    """ProgramArguments[0] of a plist we wrote."""
    if not plist_text:
        return None
    try:
        return plistlib.loads(plist_text.encode())["ProgramArguments"][0]
    except (plistlib.InvalidFileException, ValueError, KeyError, IndexError, ExpatError):
        return None
