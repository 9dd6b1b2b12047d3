"""systemd units that run a member's agent or a hub as a service, sandboxed so that it still works.

A unit is rendered from a `ServiceSpec` by a pure function: which role
(`ladder up` or `ladder hub run`), its folder, the command that runs
Ladder (the interpreter that runs it now, `python -m ladder`, so a
virtualenv keeps working), user or system scope and, for a system unit,
the user it runs as. `install_unit` writes it and says how to enable it.

The sandbox is what the roles were measured to need (docs/DEPLOY.md):
the whole file system is read-only but the folder (`ProtectSystem=strict`
with `ReadWritePaths=`); homes are hidden, or read-only when the folder,
the interpreter or the Python packages live in one (a folder in a home
must be writable, which `ReadWritePaths=` grants inside a read-only
home, never inside a hidden one); sockets of the internet, local ones and
netlink, which the agent watches for network changes (and glibc's
getaddrinfo asks about the addresses it has); no writable and executable
memory (CPython, uvloop, cryptography and OpenSSL map none; ctypes'
callbacks use libffi's static trampolines); the system calls of
`@system-service`. A hub that listens below port 1024 keeps exactly
CAP_NET_BIND_SERVICE, every other unit no capability at all.

A user manager has no privileges to build mount namespaces, so a user
unit adds `PrivateUsers=yes`, with which it may (systemd.exec(5)); it
cannot grant capabilities either, which is why a hub on port 443 is a
system unit.

Values are quoted as systemd reads them: an ExecStart word in double
quotes, `\\` and `"` escaped, `%` doubled (specifiers) and `$` doubled
(environment variables); a path setting the same, but for `$`, which
only command lines expand.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import ladder
from ladder.config import HubConfig, MemberConfig
from ladder.errors import UserError

Role = Literal["hub", "member"]
Scope = Literal["user", "system"]

HOMES = (Path("/home"), Path("/root"), Path("/run/user"))  # what ProtectHome= hides
FILE_LIMIT = 65536  # open files: a hub holds a socket per member and per visitor
RESTART_SEC = 5
HEADER = "# Written by `ladder install-service` for "  # then the folder: a reinstall finds its own unit


class ServiceError(UserError):
    """A unit that cannot be written where asked; the message says what to do instead."""


@dataclass(frozen=True)
class ServiceSpec:
    """What a unit runs, and where: everything the unit's text follows from."""

    role: Role
    name: str  # the member's or the hub's name in its config
    folder: Path  # absolute
    command: tuple[str, ...]  # the words that run `ladder`, the first an absolute executable
    scope: Scope
    run_as: str | None = None  # the user of a system unit (None: root)
    args: tuple[str, ...] = ()  # more options for `ladder up` or `ladder hub run`
    reads: tuple[Path, ...] = ()  # what else it reads: the interpreter's packages, a hub's certificate
    low_port: bool = False  # a hub that listens below 1024

    @property
    def unit_name(self) -> str:
        """ladder-alice.service, ladder-hub-tokyo.service: the name kept to [A-Za-z0-9_.-], as units allow."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name).strip("-.") or "default"
        return f"ladder{'-hub' if self.role == 'hub' else ''}-{safe}.service"

    @property
    def argv(self) -> tuple[str, ...]:
        run = ("hub", "run") if self.role == "hub" else ("up",)
        return (*self.command, *run, "--dir", str(self.folder), *self.args)


@dataclass(frozen=True)
class Installed:
    """Where a unit was written, the commands that start it, and what else the user must know."""

    path: Path
    commands: tuple[str, ...]
    notes: tuple[str, ...]


def member_service(config: MemberConfig, scope: Scope, run_as: str | None = None,
                   args: Iterable[str] = ()) -> ServiceSpec:
    """The unit of `ladder up` for a member's folder, run by this interpreter."""
    folder = config.folder.resolve()
    return ServiceSpec("member", config.name, folder, ladder_command(), scope,
                       _user(folder, scope, run_as), tuple(args), python_paths())


def hub_service(config: HubConfig, scope: Scope, run_as: str | None = None,
                args: Iterable[str] = ()) -> ServiceSpec:
    """The unit of `ladder hub run` for a hub's folder; port 443 asks for CAP_NET_BIND_SERVICE."""
    folder = config.folder.resolve()
    reads = (*python_paths(), config.cert.resolve(), config.key.resolve())
    return ServiceSpec("hub", config.name, folder, ladder_command(), scope,
                       _user(folder, scope, run_as), tuple(args), reads, low_port=config.listen[1] < 1024)


def _user(folder: Path, scope: Scope, run_as: str | None) -> str | None:
    """Who a system unit runs as: --run-as, else the folder's owner, who can write it."""
    if scope == "user":
        if run_as is not None:
            raise ServiceError("--run-as is for a system unit (--system): a user unit runs as you")
        return None
    if run_as is None:
        return _owner(folder)
    try:
        pwd.getpwnam(run_as)
    except KeyError:
        raise ServiceError(f"--run-as {run_as}: there is no such user on this machine") from None
    return run_as


def ladder_command() -> tuple[str, ...]:
    # Not resolved: a virtualenv's python is a symlink whose own path selects the virtualenv.
    return (os.path.abspath(sys.executable), "-m", "ladder")


def python_paths() -> tuple[Path, ...]:
    """Where this interpreter finds Ladder and its dependencies (an editable install's tree included)."""
    found = [Path(ladder.__file__).resolve().parent]
    found += [Path(entry).resolve() for entry in sys.path if entry and os.path.isabs(entry)]
    return tuple(dict.fromkeys(path for path in found if path.exists()))


def _owner(folder: Path) -> str:
    uid = folder.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)  # User= takes a number too


def _in_a_home(path: Path) -> bool:
    return any(path.is_relative_to(home) for home in HOMES)


def exec_word(word: str) -> str:
    """One word of a command line, as systemd.service(5) "Command lines" unquotes it."""
    return '"' + _escaped(word).replace("$", "$$") + '"'


def path_word(path: Path | str) -> str:
    """A path in a setting such as ReadWritePaths=: quoted, specifiers escaped, `$` left as it is."""
    return '"' + _escaped(str(path)) + '"'


def _escaped(text: str) -> str:
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    # A newline would end the setting; systemd's C escapes carry any control character.
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)


def render_unit(spec: ServiceSpec) -> str:
    """The unit file's text."""
    system = spec.scope == "system"
    what = f"Ladder hub {spec.name}" if spec.role == "hub" else f"Ladder member {spec.name}"
    given = [Path(arg) for arg in spec.args if arg.startswith("/")]  # a --rules file, say
    paths = [spec.folder, Path(spec.command[0]), *spec.reads, *given]
    protect_home = "read-only" if any(_in_a_home(path) for path in paths) else "yes"
    capabilities = "CAP_NET_BIND_SERVICE" if spec.low_port and system else ""
    unit = [
        HEADER + path_word(spec.folder),
        "[Unit]",
        f"Description={_escaped(what)}",
    ]
    if system:  # a user manager has no network-online.target to wait for
        unit += ["Wants=network-online.target", "After=network-online.target"]
    unit += [
        "",
        "[Service]",
        "Type=exec",
        "ExecStart=" + " ".join(exec_word(word) for word in spec.argv),
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        # Lines reach the journal as they are printed, not when a buffer fills.
        "Environment=PYTHONUNBUFFERED=1",
        f"LimitNOFILE={FILE_LIMIT}",
        "UMask=0077",
    ]
    if not system:
        unit.append("PrivateUsers=yes")
    else:
        unit += [f"User={spec.run_as}"] if spec.run_as is not None else []
        # Other processes out of sight, and of /proc only theirs (net/ included): system units only.
        unit += ["ProtectProc=invisible", "ProcSubset=pid"]
    unit += [
        f"CapabilityBoundingSet={capabilities}",
        *([f"AmbientCapabilities={capabilities}"] if capabilities else []),
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={path_word(spec.folder)}",
        f"ProtectHome={protect_home}",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "PrivateMounts=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
        "",
        "[Install]",
        f"WantedBy={'multi-user.target' if system else 'default.target'}",
    ]
    return "\n".join(unit) + "\n"


def unit_dir(scope: Scope) -> Path:
    """Where systemd looks for units the administrator (system) or the user installs."""
    if scope == "system":
        return Path("/etc/systemd/system")
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(config_home) / "systemd" / "user"


def install_unit(spec: ServiceSpec, path: Path | None = None) -> Installed:
    """Write the unit (to the scope's unit folder unless `path`) and say how to start it."""
    in_unit_dir = path is None
    target = unit_dir(spec.scope) / spec.unit_name if path is None else path
    if not target.name.endswith(".service"):
        raise ServiceError(f"{target}: a unit file's name ends in .service")
    text = render_unit(spec)
    _check_not_another(target, text)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError as exc:
        root = " (a system unit is root's to write: sudo)" if spec.scope == "system" else ""
        raise ServiceError(f"cannot write {target}: {exc.strerror or exc}{root}; "
                           "or --print the unit, or --output FILE") from None
    return Installed(target, _commands(spec, target, in_unit_dir), _notes(spec))


def _check_not_another(target: Path, text: str) -> None:
    """A unit of the same name for another folder (two hubs both named "hub") is not replaced."""
    try:
        first = target.read_text(errors="replace").partition("\n")[0]
    except OSError:
        return  # none there, or unreadable: then the write says why in one line
    ours = text.partition("\n")[0]
    if first.startswith(HEADER) and first != ours:
        raise ServiceError(f"{target} runs {first.removeprefix(HEADER)}, another folder: "
                           "give this one --output FILE (another name)")
    if not first.startswith(HEADER):
        raise ServiceError(f"{target} exists and was not written by ladder: remove it, or --output FILE")


def _commands(spec: ServiceSpec, target: Path, in_unit_dir: bool) -> tuple[str, ...]:
    systemctl = "systemctl --user" if spec.scope == "user" else "systemctl"
    if spec.scope == "system" and os.geteuid() != 0:
        systemctl = "sudo " + systemctl
    name = target.name
    first = f"{systemctl} daemon-reload" if in_unit_dir else f"{systemctl} link {shlex.quote(str(target))}"
    return (f"{first} && {systemctl} enable --now {name}",
            f"{systemctl} status {name}   # journalctl {'--user ' if spec.scope == 'user' else ''}-u {name}")


def _notes(spec: ServiceSpec) -> tuple[str, ...]:
    notes = []
    owner = _owner(spec.folder)
    if spec.scope == "system" and spec.run_as not in (None, owner):
        notes.append(f"{spec.folder} belongs to {owner}, and {spec.run_as} must write it: "
                     f"chown -R {spec.run_as} {shlex.quote(str(spec.folder))}")
    if spec.scope == "user":
        user = pwd.getpwuid(os.getuid()).pw_name
        notes.append(f"to run it from boot, and on while you are logged out: loginctl enable-linger {user}")
        if spec.low_port:
            notes.append("a user service cannot listen below port 1024: install it with --system, "
                         "or lower net.ipv4.ip_unprivileged_port_start")
    return tuple(notes)


