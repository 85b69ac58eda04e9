"""Crash tests' settling processes, forked from a zygote that paid for its imports once.

The zygote runs the test's script (which defines ``run()``, printing ``ready <pid>`` once it
is about to write), then forks one process per ``start``: each fork is a process of its own
on the test's SQLite files, so its SIGKILL is a real crash, without the seconds a cold start
spends importing (and whatever else the script prepares before ``run``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

FORK_LOOP = """
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        run()
        os._exit(0)
    print("exit", os.waitpid(pid, 0)[1], flush=True)
"""
"""Appended to a script that defines ``run()`` (and imports os and sys)."""


class Zygote:
    """A zygote process over ``script`` (Python code defining ``run()``) with ``args``."""

    def __init__(self, script: str, args: list[str], root: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script + FORK_LOOP, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout

    def start(self) -> int:
        """Fork a settling process; returns its pid once it printed ``ready <pid>``."""
        self.stdin.write("go\n")
        self.stdin.flush()
        ready = self.readline().split()
        assert ready[:1] == ["ready"], ready
        return int(ready[1])

    def readline(self) -> str:
        """The next line the forked process (or the zygote) printed; "" when the zygote ended."""
        return self.stdout.readline()

    def kill(self, pid: int) -> list[str]:
        """SIGKILL the forked process ``pid``; returns the lines it printed until it ended."""
        with contextlib.suppress(ProcessLookupError):  # it may have finished and been reaped
            os.kill(pid, signal.SIGKILL)
        lines: list[str] = []
        while not (lines and lines[-1].startswith("exit")):
            lines.append(self.readline())
            assert lines[-1], "the zygote ended"
        return lines

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
