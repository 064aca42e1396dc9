"""Claim files: several batch runs writing into one output folder take each case exactly once.

A claim is ``<state>/claims/<case_id>.claim``, created with ``O_CREAT | O_EXCL`` (atomic on local file systems and on
NFS v3+), holding the owner's host, process id and a random token. The owner keeps its claims fresh (their mtime is
touched every :data:`HEARTBEAT_S` seconds by a background thread) and deletes each one when the case's row is written.

Each run also keeps a marker, ``<state>/runs/<run_id>.run``, refreshed the same way and deleted when it ends, so that
other runs can tell whether the run that wrote a case's row is still going (:meth:`ClaimRegistry.run_alive`).

A claim (or a run marker) is *stale*, and a claim may be taken over, when its owner is certainly gone:

* same host, and no process with that id runs any more (a killed or crashed run on this machine); or
* its mtime is more than :data:`STALE_AFTER_S` seconds older than the file system's own clock (read from a file this
  run touches), i.e. its owner stopped refreshing it: a job killed on another node, or a hung one.

Taking over renames the stale claim to a unique name, checks that what it moved is the claim it judged (same token),
then creates a fresh one with ``O_EXCL``; two runs racing for one stale claim therefore get it once. The one window
left: a run that freezes for longer than :data:`STALE_AFTER_S` (suspended, or its node partitioned from the file
system) loses its claims and the case may run twice; the rows and masks are written atomically and keyed by case, so
the table still holds the case once.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0


@dataclass(frozen=True)
class ClaimOwner:
    """Who holds a claim, as written in the file."""

    host: str
    pid: int
    token: str

    def describe(self) -> str:
        return f"host {self.host}, process {self.pid}"


def _read_owner(path: Path) -> ClaimOwner | None:
    """The owner written in a claim file; None when it is gone or unreadable (being written, or corrupt)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ClaimOwner(str(data["host"]), int(data["pid"]), str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _process_running(pid: int) -> bool:
    """Whether ``pid`` runs on this host; always True on Windows, where ``os.kill(pid, 0)`` would end the process
    (there, only the claim's age decides)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class ClaimRegistry:
    """This run's claims in one output folder: take, release, keep fresh."""

    def __init__(self, state_dir: Path, stale_after_s: float = STALE_AFTER_S, heartbeat_s: float = HEARTBEAT_S):
        self.folder = state_dir / "claims"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.me = ClaimOwner(socket.gethostname(), os.getpid(), secrets.token_hex(8))
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self._held: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        #: this run's name in rows and claims; its marker ``runs/<run_id>.run`` lives, refreshed, as long as the run
        self.run_id = f"{self.me.host}-{self.me.pid}-{self.me.token}"
        self._clock = self._run_marker(self.run_id)
        self._clock.parent.mkdir(parents=True, exist_ok=True)
        self._clock.write_text(json.dumps({"host": self.me.host, "pid": self.me.pid, "token": self.me.token}),
                               encoding="utf-8")
        #: when this run started, on the file system's clock (compared with other files' mtimes, never with time.time)
        self.started_ns = self._clock.stat().st_mtime_ns
        self._thread = threading.Thread(target=self._heartbeat, name="strokeseg-claims", daemon=True)
        self._thread.start()

    def path(self, case_id: str) -> Path:
        return self.folder / f"{case_id}.claim"

    def claim(self, case_id: str) -> ClaimOwner | None:
        """Take ``case_id``: None when this run now holds it, else the live owner that does."""
        path = self.path(case_id)
        for _ in range(3):  # at most: create fails, stale claim moved away, create again
            if self._create(path):
                return None
            owner = _read_owner(path)
            if owner is None and not path.exists():
                continue  # released between our create and read: try again
            if not self._is_stale(path, owner):
                return owner or ClaimOwner("?", -1, "")
            self._remove_stale(path, owner)
        owner = _read_owner(path)
        return owner or ClaimOwner("?", -1, "")

    def run_alive(self, run_id: str) -> bool:
        """Whether the run named ``run_id`` is still going (its marker is there and not stale); True for this run."""
        if run_id == self.run_id:
            return True
        marker = self._run_marker(run_id)
        owner = _read_owner(marker)
        if owner is None and not marker.exists():
            return False
        return not self._is_stale(marker, owner)

    def _run_marker(self, run_id: str) -> Path:
        return self.folder.parent / "runs" / f"{run_id}.run"

    def release(self, case_id: str) -> None:
        """Give ``case_id`` back (its row is written, or this run is stopping before it)."""
        path = self.path(case_id)
        with self._lock:
            self._held.discard(path)
        if (owner := _read_owner(path)) is not None and owner.token == self.me.token:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop the heartbeat and release whatever is still held (a cancelled or failed run)."""
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            held = list(self._held)
        for path in held:
            self.release(path.name[: -len(".claim")])
        self._clock.unlink(missing_ok=True)

    def _create(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"host": self.me.host, "pid": self.me.pid, "token": self.me.token,
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, handle)
        with self._lock:
            self._held.add(path)
        return True

    def _fs_now_ns(self) -> int:
        self._clock.touch()
        return self._clock.stat().st_mtime_ns

    def _is_stale(self, path: Path, owner: ClaimOwner | None) -> bool:
        if owner is not None and owner.host == self.me.host and owner.pid != self.me.pid:
            if not _process_running(owner.pid):
                return True
        try:
            age_s = (self._fs_now_ns() - path.stat().st_mtime_ns) / 1e9
        except FileNotFoundError:
            return False  # released meanwhile; the next create will tell
        return age_s > self.stale_after_s

    def _remove_stale(self, path: Path, owner: ClaimOwner | None) -> None:
        moved = path.with_name(f"{path.name}.stale-{secrets.token_hex(4)}")
        try:
            os.rename(path, moved)
        except FileNotFoundError:
            return  # someone else moved or released it
        now = _read_owner(moved)
        if owner is not None and (now is None or now.token != owner.token):
            # We moved a claim that another run had just created after removing the same stale one: put it back.
            try:
                os.link(moved, path)
            except FileExistsError:
                log.warning("%s: a claim was moved while being taken over; this case may run twice", path)
        else:
            log.warning("%s: taking over a stale claim (%s)", path,
                        owner.describe() if owner else "unreadable owner")
        moved.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                held = list(self._held)
            for path in held:
                try:
                    os.utime(path)
                except FileNotFoundError:
                    pass
            try:
                self._clock.touch()
            except OSError:
                pass
