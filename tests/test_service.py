"""systemd units for a member and a hub: the sandbox lines, systemd's quoting, and `systemd-analyze verify`.

verify loads the unit as systemd would and checks that ExecStart's program
exists (so the units run the real interpreter); it exits 0 on a setting it
ignores (an unknown key, a bad value) but prints a line, so a unit passes
only with rc 0 and nothing printed. A user unit needs a runtime folder
for the user manager verify starts: XDG_RUNTIME_DIR in tmp_path.
"""

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ladder.cli import cli
from ladder.config import HubConfig, MemberConfig
from ladder.service import (
    ServiceError,
    ServiceSpec,
    exec_word,
    hub_service,
    install_unit,
    member_service,
    path_word,
    render_unit,
)

SANDBOX = [
    "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "PrivateDevices=yes",
    "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
    "LockPersonality=yes", "MemoryDenyWriteExecute=yes", "SystemCallFilter=@system-service",
    "LimitNOFILE=65536", "Restart=on-failure", "RestartSec=5",
]
ME = pwd.getpwuid(os.getuid()).pw_name


def member_folder(parent: Path, dirname: str = "ladder", name: str = "alice") -> MemberConfig:
    folder = parent / dirname
    folder.mkdir()
    MemberConfig(folder, MemberConfig.load_or_create_key(folder), ("hub.example", 443), "sha256:x", "tokyo",
                 name).save()
    return MemberConfig.load(folder)


def hub_folder(parent: Path, port: int, name: str = "tokyo") -> HubConfig:
    folder = parent / "hub"
    folder.mkdir()
    HubConfig(folder, name, ("0.0.0.0", port), ("hub.example", 443), folder / "tls.crt",
              folder / "tls.key").save()
    return HubConfig.load(folder)


def verify(spec: ServiceSpec, tmp_path: Path) -> str:
    """Write the unit under its own name and have systemd-analyze check it; returns the text."""
    text = render_unit(spec)
    path = tmp_path / "units" / spec.unit_name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    scope = ["--user"] if spec.scope == "user" else []
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *scope, str(path)],
                            check=False, capture_output=True, text=True, timeout=30,
                            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    assert (result.returncode, result.stdout + result.stderr) == (0, ""), text
    return text


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_a_members_user_unit_runs_ladder_up_sandboxed_and_verifies(tmp_path):
    config = member_folder(tmp_path)
    spec = member_service(config, "user")
    text = verify(spec, tmp_path)
    assert spec.unit_name == "ladder-alice.service"
    assert f'ExecStart="{sys.executable}" "-m" "ladder" "up" "--dir" "{config.folder}"' in lines(text)
    assert set(SANDBOX) <= set(lines(text))
    assert f'ReadWritePaths="{config.folder}"' in lines(text)
    # A user manager builds namespaces only inside a user namespace; it has no users to switch to.
    assert "PrivateUsers=yes" in lines(text)
    assert not any(line.startswith(("User=", "AmbientCapabilities=")) for line in lines(text))
    assert "CapabilityBoundingSet=" in lines(text)  # none at all
    assert "WantedBy=default.target" in lines(text)


def test_a_hub_on_443_keeps_only_the_capability_to_bind_it_and_verifies(tmp_path):
    config = hub_folder(tmp_path, 443)
    spec = hub_service(config, "system", run_as=ME)
    text = verify(spec, tmp_path)
    assert spec.unit_name == "ladder-hub-tokyo.service"
    assert f'ExecStart="{sys.executable}" "-m" "ladder" "hub" "run" "--dir" "{config.folder}"' in lines(text)
    assert set(SANDBOX) <= set(lines(text))
    assert {f"User={ME}", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
            "AmbientCapabilities=CAP_NET_BIND_SERVICE", "ProtectProc=invisible",
            "After=network-online.target", "WantedBy=multi-user.target"} <= set(lines(text))
    assert "PrivateUsers=yes" not in lines(text)


def test_a_hub_on_a_high_port_has_no_capability(tmp_path):
    text = verify(hub_service(hub_folder(tmp_path, 8443), "system"), tmp_path)
    assert "CapabilityBoundingSet=" in lines(text)
    assert not any(line.startswith("AmbientCapabilities") for line in lines(text))
    assert f"User={ME}" in lines(text)  # the folder's owner by default


def test_a_hub_user_unit_verifies_and_says_it_cannot_bind_443(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    spec = hub_service(hub_folder(tmp_path, 443), "user")
    text = verify(spec, tmp_path)
    assert not any(line.startswith("AmbientCapabilities") for line in lines(text))
    notes = install_unit(spec).notes
    assert any("below port 1024" in note and "--system" in note for note in notes)


def test_a_folder_named_with_spaces_quotes_percents_and_dollars_is_quoted_as_systemd_reads_it(tmp_path):
    config = member_folder(tmp_path, 'my "ladder" 100% $HOME\\x')
    spec = member_service(config, "user", args=["--share", "--country", "DE"])
    text = verify(spec, tmp_path)
    quoted = str(config.folder).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    # ExecStart expands $VAR, so $ is doubled there; path settings do not expand it.
    assert f'"--dir" "{quoted.replace("$", "$$")}" "--share" "--country" "DE"' in text
    assert f'ReadWritePaths="{quoted}"' in lines(text)


def test_words_with_control_characters_stay_on_their_line():
    assert exec_word("a\nb\tc") == '"a\\x0ab\\x09c"'
    assert path_word("/srv/$x%") == '"/srv/$x%%"'


@pytest.mark.parametrize(("folder", "python", "expected"), [
    ("/srv/ladder", "/usr/bin/python3", "yes"),
    ("/home/alice/ladder", "/usr/bin/python3", "read-only"),  # its folder must stay writable
    ("/srv/ladder", "/home/alice/venv/bin/python", "read-only"),  # so must its interpreter be readable
    ("/srv/ladder", "/root/.pyenv/bin/python", "read-only"),
])
def test_homes_are_hidden_unless_the_service_needs_something_in_one(folder, python, expected):
    spec = ServiceSpec("member", "alice", Path(folder), (python, "-m", "ladder"), "system")
    assert f"ProtectHome={expected}" in lines(render_unit(spec))


def test_names_become_unit_names():
    def name(role, given):
        return ServiceSpec(role, given, Path("/srv"), ("/usr/bin/python3",), "user").unit_name
    assert name("hub", "my hub!") == "ladder-hub-my-hub.service"
    assert name("member", "bob_2") == "ladder-bob_2.service"
    assert name("hub", "東京") == "ladder-hub-default.service"


def test_install_writes_the_user_unit_and_says_how_to_enable_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    spec = member_service(member_folder(tmp_path), "user")
    installed = install_unit(spec)
    assert installed.path == tmp_path / "config/systemd/user/ladder-alice.service"
    assert installed.path.read_text() == render_unit(spec)
    assert installed.commands[0] == ("systemctl --user daemon-reload && "
                                     "systemctl --user enable --now ladder-alice.service")
    assert any(f"loginctl enable-linger {ME}" in note for note in installed.notes)
    assert install_unit(spec).path == installed.path  # a reinstall replaces its own unit


def test_install_to_a_file_elsewhere_links_it(tmp_path):
    spec = member_service(member_folder(tmp_path), "user")
    installed = install_unit(spec, tmp_path / "out" / "ladder-alice.service")
    assert installed.commands[0].startswith(f"systemctl --user link {tmp_path}/out/ladder-alice.service && ")


def test_install_replaces_no_unit_of_another_folder_nor_one_it_did_not_write(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    install_unit(member_service(member_folder(tmp_path, "one"), "user"))
    other = member_service(member_folder(tmp_path, "two"), "user")  # also alice
    with pytest.raises(ServiceError, match="another folder"):
        install_unit(other)
    foreign = tmp_path / "foreign.service"
    foreign.write_text("[Service]\nExecStart=/bin/true\n")
    with pytest.raises(ServiceError, match="not written by ladder"):
        install_unit(other, foreign)


def test_install_to_an_unwritable_place_or_a_name_without_service_is_one_line(tmp_path):
    spec = member_service(member_folder(tmp_path), "user")
    (tmp_path / "file").write_text("")
    with pytest.raises(ServiceError, match=r"cannot write .*--print"):
        install_unit(spec, tmp_path / "file" / "ladder-alice.service")
    with pytest.raises(ServiceError, match=r"ends in \.service"):
        install_unit(spec, tmp_path / "unit.txt")


def test_run_as_needs_a_system_unit_and_a_real_user(tmp_path):
    config = member_folder(tmp_path)
    with pytest.raises(ServiceError, match="--system"):
        member_service(config, "user", run_as=ME)
    with pytest.raises(ServiceError, match="no such user"):
        member_service(config, "system", run_as="no-such-user-here")


# ------------------------------------------------------------------ the CLI


def test_cli_print_writes_the_unit_to_stdout_only(tmp_path):
    config = hub_folder(tmp_path, 443)
    result = CliRunner().invoke(cli, ["hub", "install-service", "--dir", str(config.folder), "--system",
                                      "--print", "--", "-v"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output == render_unit(hub_service(config, "system", args=["-v"]))


def test_cli_writes_the_unit_and_prints_the_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    config = member_folder(tmp_path)
    result = CliRunner().invoke(cli, ["install-service", "--user", "--dir", str(config.folder)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"wrote {tmp_path}/config/systemd/user/ladder-alice.service"
    enable = "systemctl --user daemon-reload && systemctl --user enable --now ladder-alice.service"
    assert f"  {enable}\n" in result.output


def ladder(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ladder", *args], check=False, capture_output=True,
                          text=True, timeout=60)


def test_cli_errors_are_one_line(tmp_path):
    hub = hub_folder(tmp_path, 443).folder
    member = member_folder(tmp_path).folder
    cases = [
        (["install-service", "--dir", str(hub)], "holds no membership"),
        (["hub", "install-service", "--dir", str(member)], "holds no hub"),
        (["install-service", "--user", "--dir", str(member), "--output", str(hub / "hub.toml/x.service")],
         "cannot write"),
        (["install-service", "--user", "--dir", str(member), "--run-as", ME],
         "--run-as is for a system unit"),
    ]
    for args, message in cases:
        result = ladder(*args)
        assert result.returncode == 1 and result.stdout == "", (args, result)
        assert result.stderr.startswith("ladder: error: ") and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize(("extra", "message"), [
    (["--shar"], "No such option '--shar'"),  # checked as `ladder up` will parse it, at install time
    (["--dir", "/elsewhere"], "gives --dir itself"),
    (["--proxy-auth", "alice:secret"], "does not belong in a unit file"),
])
def test_cli_options_for_the_service_are_checked_now(tmp_path, extra, message):
    member = member_folder(tmp_path).folder
    result = CliRunner().invoke(cli, ["install-service", "--dir", str(member), "--print", "--", *extra])
    assert result.exit_code == 2 and message in result.output, result.output
