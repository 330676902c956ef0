"""Confine the validation process's file access with Landlock (Linux 5.13 and later).

Validating a model loads it, and loading a pickle runs whatever code its author put in it. A
clean environment keeps the registry's secrets out of the validation process's memory; this
module keeps them out of its reach on disk: the project's ``.shipyard/`` folder holds the admin's
token (``credentials``), the key that decrypts every stored secret (``secret.key``), the metadata
database and the other models' files.

``confine(read=..., write=...)`` applies a Landlock ruleset to the calling process (and every
process it starts afterwards): from then on it may read and execute files only beneath the
``read`` folders and read, write, create and remove files only beneath the ``write`` folders.
On kernels that support it (Landlock ABI 4 and later) it may not open or accept TCP connections
either, and (ABI 6) not signal processes outside its domain nor reach their abstract Unix
sockets. Files opened before the call (the job's log, the result pipe) stay usable. Landlock
cannot be undone or widened by the process: a model that runs code after ``confine`` keeps the
restriction.

``validation_rules`` names what a validation needs: the Python installation and ``sys.path``,
``/usr``, ``/lib*``, the files of ``/etc`` that the C library, time zones and TLS read, this
process's own ``/proc/self`` and a few global ``/proc`` files, the harmless devices (``/dev/null``,
``/dev/urandom``, ...) (read), the model's stored folder (read) and the job's own working folder
(read and write). ``/proc/self`` is resolved when the rules are made, so the rules are made in the
process being confined. A folder that contains one of the ``private`` paths
(the project's ``.shipyard/``, for instance when ``PYTHONPATH`` names the project folder itself)
is left out, so nothing of it becomes readable by accident.

``landlock_abi()`` is the kernel's Landlock ABI version (0 when there is none: not Linux, a kernel
before 5.13, or Landlock not enabled in the ``lsm=`` boot list). ``describe(...)`` is the sentence
the server prints at start about the mode in use.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Syscall numbers: since Linux 5.1 new syscalls share one number on every architecture.
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

# Filesystem access rights (include/uapi/linux/landlock.h), by the ABI that introduced them.
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

_ABI1_FS = (1 << 13) - 1
#: the rights a rule on a file (not a folder) may carry
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
READ = EXECUTE | READ_FILE | READ_DIR
#: the oldest ABI this module uses (every right above that the kernel knows is handled)
MIN_ABI = 1

#: read-only system paths a Python process and the libraries models use need. Deliberately not
#: the whole of /etc (service secrets, e.g. a systemd EnvironmentFile, live there), /proc (another
#: process's /proc/<pid>/environ stays readable under Landlock) or /dev.
SYSTEM_READ = (
    "/usr", "/lib", "/lib64", "/lib32", "/libx32",
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/timezone",
    "/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/hosts", "/etc/host.conf", "/etc/resolv.conf",
    "/etc/gai.conf", "/etc/ssl", "/etc/pki", "/etc/ca-certificates", "/etc/mime.types", "/etc/os-release",
    "/etc/locale.alias", "/etc/machine-id",
    "/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/loadavg", "/proc/version",
    "/proc/filesystems", "/proc/sys/kernel", "/proc/sys/vm",
    "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
    "/sys/devices/system/cpu", "/sys/fs/cgroup",
)
#: devices a process writes to without any secret behind them
DEVICE_WRITE = ("/dev/null", "/dev/zero", "/dev/full", "/dev/tty")


class ConfinementUnavailable(OSError):
    """The kernel cannot confine this process (no Landlock, or it refused the ruleset)."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _call(libc: ctypes.CDLL, number: int, *args: object) -> int:
    result = int(libc.syscall(ctypes.c_long(number), *args))
    if result < 0:
        err = ctypes.get_errno()
        raise ConfinementUnavailable(err, f"{os.strerror(err)} (syscall {number})")
    return result


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when this system has none."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = _libc()
        version = int(libc.syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0),
                                   ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)))
    except (OSError, AttributeError):
        return 0
    return max(version, 0)


def _handled_fs(abi: int) -> int:
    rights = _ABI1_FS
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


@dataclass(frozen=True)
class Confinement:
    """What ``confine`` applied: the ABI, and which folders it allowed."""

    abi: int
    read: tuple[str, ...]
    write: tuple[str, ...]
    network: bool  # TCP refused
    scoped: bool  # signals and abstract Unix sockets outside the domain refused

    def summary(self) -> str:
        extra = (", no TCP" if self.network else "") + (", no signals out" if self.scoped else "")
        return f"landlock ABI {self.abi}{extra}"


def confine(*, read: Iterable[str | Path], write: Iterable[str | Path] = (),
            device_write: Iterable[str | Path] = DEVICE_WRITE) -> Confinement:
    """Restrict this process to reading ``read`` and reading/writing ``write`` (see module doc).

    Paths that do not exist are skipped. ``ConfinementUnavailable`` when the kernel has no
    Landlock or refuses the ruleset; then nothing was restricted."""
    abi = landlock_abi()
    if abi < MIN_ABI:
        raise ConfinementUnavailable(
            0, "this kernel has no Landlock (Linux 5.13 or later with landlock in the lsm= boot list is needed)")
    handled = _handled_fs(abi)
    attr = _RulesetAttr(handled_access_fs=handled)
    size = 8
    if abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
    libc = _libc()
    ruleset = _call(libc, SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    allowed_read: list[str] = []
    allowed_write: list[str] = []
    try:
        for path in _existing(read):
            _add_rule(libc, ruleset, path, READ & handled)
            allowed_read.append(path)
        for path in _existing(device_write):
            _add_rule(libc, ruleset, path, (READ | WRITE_FILE | IOCTL_DEV | TRUNCATE) & handled)
        for path in _existing(write):
            _add_rule(libc, ruleset, path, handled)
            allowed_write.append(path)
        if libc.prctl(ctypes.c_int(PR_SET_NO_NEW_PRIVS), ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0),
                      ctypes.c_ulong(0)) != 0:
            err = ctypes.get_errno()
            raise ConfinementUnavailable(err, f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(err)}")
        _call(libc, SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    return Confinement(abi, tuple(allowed_read), tuple(allowed_write), network=abi >= 4, scoped=abi >= 6)


def _add_rule(libc: ctypes.CDLL, ruleset: int, path: str, rights: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS
        rule = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
        _call(libc, SYS_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
              ctypes.byref(rule), ctypes.c_uint32(0))
    finally:
        os.close(fd)


def _existing(paths: Iterable[str | Path]) -> list[str]:
    out: list[str] = []
    for path in paths:
        text = os.path.abspath(str(path))
        if text not in out and os.path.exists(text):
            out.append(text)
    return out


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def python_roots() -> list[str]:
    """Where this interpreter's code lives: its installation prefixes and ``sys.path``."""
    roots = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    roots += [p for p in sys.path if p]
    return roots


def validation_rules(model_folder: str | Path, work_dir: str | Path,
                     private: Sequence[str | Path] = ()) -> tuple[list[str], list[str], list[str]]:
    """``(read, write, left_out)`` for validating the model in ``model_folder`` with ``work_dir`` as
    its scratch space. Read roots containing a ``private`` path are left out (and returned)."""
    keep_out = [os.path.realpath(str(p)) for p in private if str(p)]
    read: list[str] = []
    left_out: list[str] = []
    for root in [*python_roots(), *SYSTEM_READ]:
        real = os.path.realpath(root)
        if any(_inside(secret, real) for secret in keep_out):
            left_out.append(root)
        elif real not in read:
            read.append(real)
    read.append(os.path.realpath(str(model_folder)))
    return read, [os.path.realpath(str(work_dir))], left_out


def describe(*, subprocess: bool, allow_unconfined: bool) -> str:
    """The validation mode in use, in one sentence (printed when a server starts)."""
    if not subprocess:
        return ("model validation runs inside this process (validation_subprocess: false): an uploaded model's "
                "code can read everything this server can, its credentials and secret key included")
    abi = landlock_abi()
    if abi >= MIN_ABI:
        return (f"model validation runs in a separate process confined with Landlock (ABI {abi}): it reads only "
                "the Python installation, system folders and the model's own files, never the project's .shipyard/")
    if allow_unconfined:
        return ("this kernel has no Landlock, so model validation runs unconfined (allow_unconfined_validation: "
                "true): an uploaded model's code can read the project's .shipyard/ folder (the admin token, the "
                "secret key)")
    return ("this kernel has no Landlock, so model validation cannot be confined: packages that run code when "
            "loaded (pickle, cloudpickle, Python files) fail validation; set allow_unconfined_validation: true to "
            "validate them anyway, accepting that their code can read the project's .shipyard/ folder")
