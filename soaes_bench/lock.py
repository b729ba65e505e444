"""One writer per output directory: `with hold(out_dir, "run"): ...`.

The lock is the file <dir>/.soaes-bench.lock, held with an exclusive flock(2) for as long as the command runs and
holding {"pid", "host", "command", "argv", "started"} of its holder. A second command into the same directory
finds the flock taken and stops at once (UserError, exit 2) naming the holder. The kernel drops a flock when its
process dies, however it dies, so a lock file left by a killed process is stale: the next command takes it over
with a one-line warning naming the dead holder. The holder removes the file when it finishes (success or
failure), and removes the directories it created for the lock if they are still empty, so a failed command leaves
no empty output directory behind.

Under `accelerate launch` only the main process (RANK 0) takes the lock: the other processes of the same launch
write into the directory with it. Where fcntl is missing (Windows), the lock degrades to the pid check alone.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sys
from pathlib import Path

from soaes_bench.errors import UserError

LOCK_NAME = ".soaes-bench.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover -- not on Linux/macOS
    fcntl = None


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _holder_text(info: dict) -> str:
    started = f", started {info['started']}" if info.get("started") else ""
    host = f" on {info['host']}" if info.get("host") and info.get("host") != socket.gethostname() else ""
    return f"pid {info.get('pid', '?')}{host} ({info.get('command') or 'unknown command'}{started})"


def _read_info(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        info = json.loads(data.decode("utf-8")) if data.strip() else {}
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


class DirLock:
    """The lock of one directory; `acquire` creates the directory (remembering what it created), `release` undoes."""

    def __init__(self, directory, command: str):
        self.dir = Path(directory)
        self.path = self.dir / LOCK_NAME
        self.command = command
        self.fd: int | None = None
        self.created: list[Path] = []

    def _mkdirs(self) -> None:
        missing, d = [], Path(os.path.abspath(self.dir))
        while not d.exists() and d != d.parent:
            missing.append(d)
            d = d.parent
        for m in reversed(missing):
            try:
                m.mkdir()
                self.created.append(m)
            except FileExistsError:  # created by someone else meanwhile: theirs, not ours
                pass
            except OSError as e:
                self._remove_created()
                raise UserError(f"{self.dir}: cannot create the directory ({e.strerror or e.__class__.__name__})") from None

    def acquire(self) -> "DirLock":
        self._mkdirs()
        try:
            for _ in range(10):  # retry when the file we locked was unlinked by its releasing holder meanwhile
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                except OSError as e:
                    raise UserError(f"{self.dir}: cannot create the lock file {LOCK_NAME} "
                                    f"({e.strerror or e.__class__.__name__})") from None
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        info = _read_info(fd)
                        os.close(fd)
                        raise UserError(f"{self.dir}: in use by {_holder_text(info)}; wait for it to finish or "
                                        "choose another output directory") from None
                    try:
                        same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                    except FileNotFoundError:
                        same = False
                    if not same:
                        os.close(fd)
                        continue
                previous = _read_info(fd)
                if previous:
                    pid = previous.get("pid")
                    if fcntl is None and isinstance(pid, int) and pid != os.getpid() and _alive(pid):
                        os.close(fd)
                        raise UserError(f"{self.dir}: in use by {_holder_text(previous)}; wait for it to finish or "
                                        "choose another output directory")
                    print(f"soaes-bench: warning: {self.dir}: taking over the stale lock of {_holder_text(previous)}, "
                          "which is no longer running", file=sys.stderr)
                info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                        "argv": sys.argv, "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
                os.fsync(fd)
                self.fd = fd
                return self
            raise UserError(f"{self.dir}: could not take the lock {self.path} (it keeps changing)")
        except BaseException:
            self._remove_created()
            raise

    def release(self) -> None:
        if self.fd is not None:
            try:
                if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                    os.unlink(self.path)
            except FileNotFoundError:  # removed with its directory (e.g. a model dir replaced atomically)
                pass
            os.close(self.fd)
            self.fd = None
        self._remove_created()

    def _remove_created(self) -> None:
        """Directories this lock created, deepest first, if nothing was written into them."""
        for d in reversed(self.created):
            try:
                d.rmdir()
            except OSError:  # not empty (the command wrote its outputs) or gone
                break
        self.created = []


@contextlib.contextmanager
def hold(directory, command: str):
    """Hold the lock of `directory` (created if needed) for the block: exit 2 at once if another live command
    holds it. Under `accelerate launch`, only the main process locks."""
    if not _is_main_process():
        yield None
        return
    lock = DirLock(directory, command).acquire()
    try:
        yield lock
    finally:
        lock.release()


@contextlib.contextmanager
def hold_all(directories, command: str):
    """`hold` on several directories (duplicates, by resolved path, once), in a fixed order."""
    seen, unique = set(), []
    for d in directories:
        key = Path(d).resolve()
        if key not in seen:
            seen.add(key)
            unique.append(d)
    with contextlib.ExitStack() as stack:
        for d in sorted(unique, key=lambda d: str(Path(d).resolve())):
            stack.enter_context(hold(d, command))
        yield
