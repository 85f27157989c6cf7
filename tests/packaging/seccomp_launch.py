"""Run a command under the system-call rules of systemd/vigatra.service, as systemd 252 sets them.

    /usr/bin/python3 seccomp_launch.py COMMAND [ARGS...]

Run by Debian's python3, whose `seccomp` module (package python3-seccomp) the test's venv lacks.
Emulates: SystemCallFilter=@system-service, SystemCallFilter=~@privileged @resources,
SystemCallErrorNumber=EPERM, and MemoryDenyWriteExecute=yes (systemd's seccomp rules for it).
The groups are read from `systemd-analyze syscall-filter`, so they are this systemd's own.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import subprocess
import sys

import seccomp


def syscall_groups() -> dict[str, list[str]]:
    listing = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True,
                             check=True).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = line.strip()
            groups[current] = []
        elif current and line.startswith("    ") and line.strip() and not line.strip().startswith("#"):
            groups[current].append(line.strip())
    return groups


def expand(groups: dict[str, list[str]], name: str, seen: set[str] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    calls: set[str] = set()
    for item in groups[name]:
        if item.startswith("@"):
            if item not in seen:
                seen.add(item)
                calls |= expand(groups, item, seen)
        else:
            calls.add(item)
    return calls


def main() -> None:
    groups = syscall_groups()
    allowed = expand(groups, "@system-service") - expand(groups, "@privileged") - expand(groups, "@resources")
    allow_list = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    for call in sorted(allowed | {"execve", "exit", "exit_group", "rt_sigreturn"}):
        with contextlib.suppress(RuntimeError, ValueError, OSError):  # a name this architecture lacks
            allow_list.add_rule(seccomp.ALLOW, call)
    write_exec = mmap.PROT_WRITE | mmap.PROT_EXEC
    no_wx = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    no_wx.add_rule(seccomp.ERRNO(errno.EPERM), "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, write_exec, write_exec))
    for call in ("mprotect", "pkey_mprotect"):
        no_wx.add_rule(seccomp.ERRNO(errno.EPERM), call,
                       seccomp.Arg(2, seccomp.MASKED_EQ, mmap.PROT_EXEC, mmap.PROT_EXEC))
    no_wx.add_rule(seccomp.ERRNO(errno.EPERM), "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, 0o100000, 0o100000))
    no_wx.load()
    allow_list.load()
    os.execv(sys.argv[1], sys.argv[1:])  # noqa: S606 - replacing this process is the point


if __name__ == "__main__":
    main()
