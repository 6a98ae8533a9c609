"""The system-wide service's robustness: the CA file it trusts is root's own copy, and an
install that rewrites the shared template restarts every other instance it can.

No system manager runs here (see test_system_service.py): these tests drive the backend
with a recording systemctl and read the files an install writes, and say so in their names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from test_system_service import RecordingSystemctl, run_cli, spec, system_root, written

from giskard.installer.commands import Result
from giskard.installer.system import SystemServiceBackend, install_instance, with_security
from giskard.tls import ChannelSecurity

__all__ = ["system_root"]  # a fixture of test_system_service.py, used here

CA = b"-----BEGIN CERTIFICATE-----\nMIIB the hub's CA\n-----END CERTIFICATE-----\n"


def test_the_instance_trusts_roots_copy_of_the_ca_file_without_a_system_manager(
    tmp_path: Path,
) -> None:
    """Whoever may replace the CA file given to `start --system` must not be able to stand
    in for the hub: the unit names root's copy, which stays as it was written."""
    given = tmp_path / "given" / "ca.pem"
    given.parent.mkdir()
    given.write_bytes(CA)
    systemctl = RecordingSystemctl()
    backend = SystemServiceBackend(runner=systemctl, root=tmp_path / "root")
    security = ChannelSecurity(True, str(given))
    the_spec = with_security(backend, spec("10.0.0.7", 41000), security)
    name = the_spec.name
    copy = tmp_path / "root" / "etc" / "giskard-worker-ca" / f"{name}.ca"

    install_instance(backend, the_spec, "k-1", security.ca_certificates())
    drop_in = backend.unit_path(name).read_text()
    assert f'"--ca-file" "{copy}"' in drop_in and str(given) not in drop_in
    assert copy.read_bytes() == CA
    assert (copy.stat().st_uid, oct(copy.stat().st_mode & 0o777)) == (os.getuid(), "0o644")
    assert oct(copy.parent.stat().st_mode & 0o777) == "0o755"  # its user reads it

    given.write_bytes(b"an attacker's CA\n")
    assert copy.read_bytes() == CA

    # A new CA alone restarts the instance: the worker reads it at start only.
    systemctl.calls.clear()
    outcome = install_instance(backend, the_spec, "k-1", b"a renewed CA\n")
    assert outcome.action.name == "UPDATED"
    assert ["systemctl", "--no-pager", "restart", backend.unit(name)] in systemctl.commands()
    assert copy.read_bytes() == b"a renewed CA\n"

    assert backend.stop(name) is True
    assert not copy.exists() and not copy.parent.exists()


def test_an_instance_without_a_ca_file_keeps_no_copy_without_a_system_manager(
    tmp_path: Path,
) -> None:
    backend = SystemServiceBackend(runner=RecordingSystemctl(), root=tmp_path)
    with_ca = with_security(backend, spec(), ChannelSecurity(True, "/somewhere/ca.pem"))
    install_instance(backend, with_ca, "k-1", CA)
    assert backend.ca_path(spec().name).exists()
    without = with_security(backend, spec(), ChannelSecurity(True))
    install_instance(backend, without, "k-1", None)
    assert "--ca-file" not in backend.unit_path(spec().name).read_text()
    assert not backend.ca_path(spec().name).exists()


def test_an_unreadable_ca_file_is_one_line_and_writes_nothing(
    system_root: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-ca.pem"
    args = ("worker", "start", "-d", "-h", "hub.example.com", "--system", "--run-as", "nobody")
    result = run_cli(system_root, *args, "--ca-file", str(missing))
    assert result.returncode == 78, result.stderr
    [line] = result.stderr.splitlines()
    assert line == f"giskard: error: cannot read the CA file {missing}: No such file or directory"
    assert written(system_root) == []


class FailingRestart(RecordingSystemctl):
    """A manager on which restarting the units in `failing` fails."""

    def __init__(self, failing: set[str]) -> None:
        super().__init__()
        self.failing = failing

    def __call__(
        self, argv: Sequence[str], *, check: bool = False, timeout_s: float = 30
    ) -> Result:
        if "restart" in argv and argv[-1] in self.failing:
            self.calls.append(list(argv))
            return Result(tuple(argv), 1, "", f"Job for {argv[-1]} failed.\n")
        return super().__call__(argv, check=check, timeout_s=timeout_s)


def test_a_new_template_restarts_every_other_instance_though_one_fails_without_a_system_manager(
    tmp_path: Path,
) -> None:
    """One instance that fails to restart neither stops the others' restarts nor this
    start, which has installed its instance: it is named, after every attempt."""
    specs = [spec(), spec("10.0.0.7", 41000), spec("10.0.0.8", 41000), spec("10.0.0.9", 41000)]
    backend = SystemServiceBackend(runner=RecordingSystemctl(), root=tmp_path)
    first, *others = [backend.unit(s.name) for s in specs]
    systemctl = FailingRestart({others[0]})
    backend = SystemServiceBackend(runner=systemctl, root=tmp_path)
    systemctl.active |= {first, *others}
    for the_spec in specs:
        backend.store_key(the_spec.name, "k-1")
        for path, text in backend.files(the_spec).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    # What an older giskard-worker wrote.
    old = backend.render_template().replace("RestartSec=5", "RestartSec=1")
    backend.template_path.write_text(old)

    outcome = install_instance(backend, specs[0], "k-1")
    restarts = [call[-1] for call in systemctl.commands() if "restart" in call]
    assert sorted(restarts[1:]) == sorted(others)
    assert outcome.also_restarted == tuple(others[1:])
    [failure] = outcome.restart_failures
    assert failure.startswith(f"the service {specs[1].name} failed to restart")
