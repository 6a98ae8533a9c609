"""Service names, escaping, and the rendered unit and plist (golden files)."""

from __future__ import annotations

import os
import plistlib
from pathlib import Path

import pytest

from giskard.address import HubAddress
from giskard.errors import UsageError
from giskard.installer.base import ServiceSpec
from giskard.installer.launchd import LaunchdBackend
from giskard.installer.naming import launchd_label, name_of_label, service_name
from giskard.installer.render import systemd_command, systemd_quote
from giskard.installer.systemd import SystemdBackend

GOLDEN = Path(__file__).parent / "golden"


def spec(host: str = "localhost", port: int = 40051, interpreter: str = "/opt/venv/bin/python"):
    return ServiceSpec(
        address=HubAddress(host, port),
        interpreter=interpreter,
        verbose=False,
        path="/opt/venv/bin:/usr/bin:/bin",
        home="/home/ada",
        giskard_home="/home/ada/giskard-home",
    )


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("GISKARD_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; set GISKARD_UPDATE_GOLDEN=1 to accept"


@pytest.mark.parametrize(
    ("host", "port", "name"),
    [
        ("localhost", 40051, "giskard-worker"),
        ("localhost", 41000, "giskard-worker-localhost-41000"),
        ("10.0.0.7", 40051, "giskard-worker-10.0.0.7-40051"),
        ("Hub.Example.COM", 443, "giskard-worker-hub.example.com-443"),
        # Every loopback spelling of a hub is one hub, named by its canonical spelling.
        ("127.0.0.1", 40051, "giskard-worker"),
        ("::1", 40051, "giskard-worker"),
        ("[0:0::1]", 41000, "giskard-worker-localhost-41000"),
        ("LOCALHOST.", 41000, "giskard-worker-localhost-41000"),
    ],
)
def test_service_names(host: str, port: int, name: str) -> None:
    assert service_name(HubAddress(host, port)) == name


def test_names_that_lost_information_get_a_hash_and_stay_distinct() -> None:
    v6 = service_name(HubAddress("2001:db8::1", 40051))
    assert v6.startswith("giskard-worker-2001_db8_1-40051-") and len(v6.rsplit("-", 1)[1]) == 8
    assert service_name(HubAddress("a_b", 1)) != service_name(HubAddress("a-b", 1))
    assert service_name(HubAddress("2001:db8:0::1", 40051)) == v6  # stable, one spelling


def test_names_stay_short_whatever_the_host() -> None:
    labels = ["a" * 63, "b" * 63, "c" * 63]
    long_host = ".".join([*labels, "d" * 61])
    name = service_name(HubAddress(long_host, 41000))
    assert len(name) < 100 and name.startswith(f"giskard-worker-{'a' * 63}-41000-")
    other = service_name(HubAddress(".".join([*labels, "e" * 61]), 41000))
    assert other != name


def test_launchd_labels_map_both_ways() -> None:
    assert launchd_label("giskard-worker") == "ai.giskard.worker"
    assert launchd_label("giskard-worker-10.0.0.7-40051") == "ai.giskard.worker.10.0.0.7-40051"
    for name in ("giskard-worker", "giskard-worker-localhost-41000"):
        assert name_of_label(launchd_label(name)) == name


def test_systemd_quoting_escapes_what_systemd_would_expand() -> None:
    assert systemd_quote('a "b" \\c 100% $HOME') == '"a \\"b\\" \\\\c 100%% $HOME"'
    assert systemd_command(["/p/py", "$x", "50%"]) == '"/p/py" "$$x" "50%%"'


def test_an_executable_systemd_cannot_quote_goes_through_env() -> None:
    assert systemd_command(['/we"ird/py', "-m"]) == '"/usr/bin/env" "/we\\"ird/py" "-m"'


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\0b", "a\x1bb", "a\x7fb"])
def test_control_characters_are_refused(value: str) -> None:
    with pytest.raises(UsageError, match="control character"):
        systemd_quote(value)


def test_systemd_unit_golden() -> None:
    check_golden("giskard-worker.service", SystemdBackend().render_unit(spec()))


def test_systemd_unit_with_spaces_and_percent_golden() -> None:
    unit = SystemdBackend().render_unit(spec("10.0.0.7", 41000, "/home/ada/my envs/100% py/python"))
    check_golden("giskard-worker-10.0.0.7-41000.service", unit)
    assert 'ExecStart="/home/ada/my envs/100%% py/python" "-m" "giskard.cli"' in unit


def test_plist_golden_parses_with_the_expected_keys() -> None:
    text = LaunchdBackend(home=Path("/home/ada")).render_plist(spec(interpreter="/a&b/<py>"))
    check_golden("ai.giskard.worker.plist", text)
    plist = plistlib.loads(text.encode())
    assert plist["Label"] == "ai.giskard.worker"
    assert plist["ProgramArguments"][:5] == ["/a&b/<py>", "-m", "giskard.cli", "worker", "start"]
    assert plist["ProgramArguments"][-1] == "--no-log-stderr"
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ThrottleInterval"] == 10 and plist["ExitTimeOut"] == 30
    assert plist["ProcessType"] == "Interactive"
    assert plist["WorkingDirectory"] == "/home/ada"
    assert plist["EnvironmentVariables"]["PATH"].startswith("/opt/venv/bin:")
    assert plist["EnvironmentVariables"]["PYTHONUNBUFFERED"] == "1"
    assert plist["StandardErrorPath"] == "/home/ada/giskard-home/run/giskard-worker.launchd.out"
    # launchd restarts every non-zero exit: fatal configuration errors must exit 0 there.
    assert plist["EnvironmentVariables"]["GISKARD_FATAL_EXIT_CODE"] == "0"


class RecordingLaunchctl:
    """Stands in for launchctl, which cannot run on Linux: records argv, answers scripted."""

    def __init__(self, loaded: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.loaded = loaded

    def __call__(self, argv: list[str]) -> object:
        from giskard.installer.commands import Result

        self.calls.append(list(argv))
        command = argv[1]
        if command == "print":
            out = "state = running\n\tpid = 4242\n" if self.loaded else ""
            return Result(tuple(argv), 0 if self.loaded else 113, out, "")
        if command == "bootstrap":
            self.loaded = True
        if command == "bootout":
            self.loaded = False
        return Result(tuple(argv), 0, "", "")


@pytest.mark.parametrize(("gui", "domain"), [(True, "gui/501"), (False, "user/501")])
def test_launchd_install_and_stop_argv_without_launchd(
    tmp_path: Path, gui: bool, domain: str
) -> None:
    launchctl = RecordingLaunchctl()
    backend = LaunchdBackend(runner=launchctl, home=tmp_path, uid=501, gui=gui)
    the_spec = spec()
    the_spec = ServiceSpec(**{**the_spec.__dict__, "giskard_home": str(tmp_path / "gh")})
    outcome = backend.install(the_spec)
    plist = tmp_path / "Library" / "LaunchAgents" / "ai.giskard.worker.plist"
    target = f"{domain}/ai.giskard.worker"
    assert launchctl.calls == [
        ["launchctl", "print", target],
        ["launchctl", "enable", target],
        ["launchctl", "bootstrap", domain, str(plist)],
        ["launchctl", "print", target],
    ]
    assert outcome.pid == 4242 and outcome.action.name == "INSTALLED"
    assert oct(plist.stat().st_mode & 0o777) == "0o644"

    launchctl.calls.clear()
    assert backend.install(the_spec).action.name == "UNCHANGED"
    assert launchctl.calls == [["launchctl", "print", target]]

    launchctl.calls.clear()
    assert backend.stop("giskard-worker") is True
    assert launchctl.calls == [["launchctl", "print", target], ["launchctl", "bootout", target]]
    assert not plist.exists()


def test_launchd_reinstall_from_another_interpreter_boots_out_first_without_launchd(
    tmp_path: Path,
) -> None:
    launchctl = RecordingLaunchctl()
    backend = LaunchdBackend(runner=launchctl, home=tmp_path, uid=501, gui=True)
    base = {**spec().__dict__, "giskard_home": str(tmp_path / "gh")}
    backend.install(ServiceSpec(**base))
    launchctl.calls.clear()
    outcome = backend.install(ServiceSpec(**{**base, "interpreter": "/other/python"}))
    assert [c[1] for c in launchctl.calls] == ["print", "bootout", "enable", "bootstrap", "print"]
    assert outcome.action.name == "REBOUND"
    assert outcome.previous_interpreter == "/opt/venv/bin/python"


def test_launchd_restart_is_kickstart_k_without_launchd(tmp_path: Path) -> None:
    launchctl = RecordingLaunchctl(loaded=True)
    LaunchdBackend(runner=launchctl, home=tmp_path, uid=501, gui=True).restart("giskard-worker")
    assert launchctl.calls == [["launchctl", "kickstart", "-k", "gui/501/ai.giskard.worker"]]
