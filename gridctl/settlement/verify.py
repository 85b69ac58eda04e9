"""Ed25519 checks of signed readings, in this process or in worker processes.

``verify_signatures`` is the check itself. ``ParallelVerifier`` runs it in worker processes, one
pipe each, so that the settling process books an interval while they check its signatures (and
checks a share itself once it is done).

Each worker is a fresh interpreter (not a fork: it holds no copy of the caller's files, locks or
pipes, and imports only this module) talking over one socket pair, and leaves as soon as the
process that started it is gone: its socket reads end-of-file, or — should some other process
hold a copy of the caller's end — it finds itself re-parented, which it checks every second
while idle.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

log = logging.getLogger(__name__)

VerifyJob = tuple[bytes, bytes, bytes]
"""(public key, signature, payload) of one signature check."""

_IDLE_CHECK_S = 1.0
"""How often an idle worker checks that the process that started it is still there, s."""

_ROOT = str(Path(__file__).resolve().parents[2])
"""Where this process imports ``gridctl`` from; the workers import it from there too."""

_STARTUP_S = 60.0
"""Longest a worker may take to start (a fresh interpreter importing PyNaCl), s."""

_SECONDS = struct.Struct("<d")
"""A worker's answer starts with the seconds its checks took."""


def verify_signatures(jobs: Sequence[VerifyJob]) -> list[bool]:
    """Ed25519 check of each (public key, signature, payload); pure, runs in any process.

    libsodium's verification (via PyNaCl): twice OpenSSL's speed here, and stricter (canonical
    encodings, no small-order points), so it accepts a subset of what RFC 8032 verifiers accept
    and never an honest meter's reading less.
    """
    out = []
    for pub, sig, payload in jobs:
        try:
            crypto_sign_open(sig + payload, pub)
            out.append(True)
        except (BadSignatureError, ValueError, TypeError):
            out.append(False)
    return out


def _serve(fd: int, parent_pid: int) -> None:
    """A worker on socket ``fd``: answer each list of jobs with the seconds the checks took and
    one byte per verdict (1 valid, 0 not), until the parent closes the socket or is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; we follow it
    conn = Connection(fd)
    conn.send_bytes(b"ready")
    try:
        while True:
            if not conn.poll(_IDLE_CHECK_S):
                if os.getppid() != parent_pid:
                    return
                continue
            jobs = conn.recv()
            t0 = time.perf_counter()
            verdicts = bytes(verify_signatures(jobs))
            conn.send_bytes(_SECONDS.pack(time.perf_counter() - t0) + verdicts)
    except (EOFError, OSError):
        return


def _cores() -> int:
    """How many CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):  # Linux: honours taskset and cpusets
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class WorkerError(RuntimeError):
    """A verification worker did not answer (it died or hung); its checks run in the caller."""


class ParallelVerifier:
    """Signature checks split between worker processes and the caller.

    workers: worker processes (default: one per CPU the process may use, less one for the
    caller). ``submit`` sends a batch to the workers and returns at once; the caller goes on
    with its own work (booking), then ``Ticket.result`` checks the caller's share and collects
    the workers' verdicts. The caller's share is learned from earlier batches (the workers'
    seconds per check and the caller's time between ``submit`` and ``result``), so that both
    finish together; none at first. A batch smaller than ``min_batch`` is checked in the
    caller (the round trip would cost more than it saves). A worker that dies is replaced at
    the next batch and its share checked in the caller. Use as a context manager, or call
    ``close``.
    """

    def __init__(self, workers: int | None = None, min_batch: int = 64):
        self.workers = workers if workers is not None else max(_cores() - 1, 1)
        if self.workers < 1:
            raise ValueError("ParallelVerifier needs at least one worker")
        self.min_batch = min_batch
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * self.workers
        self._conns: list[Connection | None] = [None] * self.workers
        self._pending: Ticket | None = None
        # seconds per job: one check, and the caller's own work between submit and result
        self._check_s: float | None = None
        self._busy_s = 0.0

    def __enter__(self) -> ParallelVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, jobs: Sequence[VerifyJob]) -> list[bool]:
        return self.submit(jobs).result()

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [p.pid for p in self._procs if p is not None]

    def start(self) -> None:
        """Start every worker not running yet and wait until each is ready (``submit`` does it
        too; call it to keep the start-up out of a measurement). WorkerError if one fails."""
        starting = []
        for k, proc in enumerate(self._procs):
            if proc is not None and proc.poll() is None:
                continue
            self._stop(k)
            here, there = socket.socketpair()
            code = (
                f"import sys; sys.path.insert(0, {_ROOT!r});"
                " from gridctl.settlement.verify import _serve;"
                f" _serve({there.fileno()}, {os.getpid()})"
            )
            with there:
                proc = subprocess.Popen(
                    [sys.executable, "-c", code],
                    stdin=subprocess.DEVNULL,
                    pass_fds=[there.fileno()],
                )
            conn = Connection(here.detach())
            self._procs[k], self._conns[k] = proc, conn
            starting.append((k, conn))
        failed = []
        for k, conn in starting:
            try:
                if conn.poll(_STARTUP_S) and conn.recv_bytes() == b"ready":
                    continue
            except (EOFError, OSError):
                pass
            self._stop(k)
            failed.append(k)
        if failed:
            raise WorkerError(f"verification worker(s) {failed} did not start")

    def close(self) -> None:
        """Stop the workers (each exits when its pipe closes)."""
        for k in range(self.workers):
            self._stop(k)
        self._pending = None

    def _stop(self, k: int) -> None:
        conn, proc = self._conns[k], self._procs[k]
        self._conns[k] = self._procs[k] = None
        if conn is not None:
            conn.close()
        if proc is not None:
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def submit(self, jobs: Sequence[VerifyJob]) -> Ticket:
        """Start checking ``jobs``; the verdicts, in order, come from the ticket's ``result``."""
        if self._pending is not None:
            self._pending.result()  # one batch per worker at a time: collect the last one first
        if len(jobs) < self.min_batch:
            return Ticket(self, [(jobs, None)])
        try:
            self.start()
        except WorkerError as e:
            log.warning("%s; checking their share here", e)
        here = self._share(len(jobs))
        parts: list[tuple[Sequence[VerifyJob], int | None]] = [(jobs[:here], None)]
        rest = jobs[here:]
        step = -(-len(rest) // self.workers)
        for k, first in enumerate(range(0, len(rest), step)):
            chunk = rest[first : first + step]
            conn = self._conns[k]
            try:
                if conn is not None:
                    conn.send(chunk)
                    parts.append((chunk, k))
                    continue
            except OSError:
                log.warning("verification worker %d is gone; checking its share here", k)
                self._stop(k)
            parts.append((chunk, None))
        ticket = self._pending = Ticket(self, parts, time.perf_counter())
        return ticket

    def _share(self, n: int) -> int:
        """How many of ``n`` jobs the caller checks itself, once it is done with its own work:
        as many as make it finish with the workers (from the timings of earlier batches)."""
        if self._check_s is None:
            return 0
        per_worker = self._check_s / self.workers
        x = n * (per_worker - self._busy_s) / (self._check_s + per_worker)
        return int(min(max(x, 0.0), 0.5 * n))

    def _learn(self, n: int, busy_s: float, check_s: float | None) -> None:
        """Fold one batch's timings (seconds per job) into the running estimates."""
        self._busy_s = 0.5 * self._busy_s + 0.5 * busy_s / n
        if check_s is not None:
            old = self._check_s
            self._check_s = check_s if old is None else 0.5 * old + 0.5 * check_s

    def _collect(self, k: int, chunk: Sequence[VerifyJob]) -> tuple[list[bool], float | None]:
        """Worker ``k``'s verdicts on ``chunk`` and its seconds per check; checked here (None)
        if it does not answer in time."""
        conn = self._conns[k]
        try:
            if conn is None:
                raise WorkerError("stopped")
            # far more than a worker needs (some 0.06 ms a check), even on a busy machine
            if not conn.poll(10.0 + 0.01 * len(chunk)):
                raise WorkerError("no answer in time")
            answer = conn.recv_bytes()
            verdicts = answer[_SECONDS.size :]
            if len(verdicts) != len(chunk):
                raise WorkerError(f"{len(verdicts)} verdicts for {len(chunk)} checks")
            (seconds,) = _SECONDS.unpack_from(answer)
            return [v == 1 for v in verdicts], seconds / max(len(chunk), 1)
        except (EOFError, OSError, WorkerError) as e:
            log.warning("verification worker %d failed (%s); checking its share here", k, e)
            self._stop(k)
            return verify_signatures(chunk), None


class Ticket:
    """Signature checks under way (from ``ParallelVerifier.submit``)."""

    def __init__(
        self,
        verifier: ParallelVerifier,
        parts: list[tuple[Sequence[VerifyJob], int | None]],
        t0: float | None = None,
    ):
        self._verifier = verifier
        self._parts = parts  # (jobs, worker checking them; None: this process)
        self._t0 = t0  # when the workers started (None: no worker involved)
        self._out: list[bool] | None = None

    def result(self) -> list[bool]:
        """Verdict of each job, in order: checks this process's share, then collects the rest."""
        if self._out is None:
            busy_s = 0.0 if self._t0 is None else time.perf_counter() - self._t0
            out: list[bool] = []
            check_s = None
            for chunk, k in self._parts:
                if k is None:
                    out += verify_signatures(chunk)
                    continue
                verdicts, seconds = self._verifier._collect(k, chunk)
                out += verdicts
                if seconds is not None:
                    check_s = seconds if check_s is None else max(check_s, seconds)
            self._out = out
            verifier = self._verifier
            if self._t0 is not None:
                verifier._learn(len(out), busy_s, check_s)
            if verifier._pending is self:
                verifier._pending = None
        return self._out
