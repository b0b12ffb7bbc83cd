"""A run folder's life: opened new or for resume (the one place either happens), its config and notes, and the
clean-up of a new folder whose run failed before its first checkpoint.

A run folder holds ``config.json`` (the track, the resolved config and a few track facts such as the data used),
``metrics.jsonl``, pictures and ``checkpoints/``.  Only rank 0 writes; every rank reads.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from electra.config import apply_overrides, to_dict
from electra.core import distributed
from electra.core.checkpoint import find_checkpoint, has_checkpoint
from electra.core.files import fresh_folder, write_json, write_text
from electra.core.log import log
from electra.errors import UserError

CONFIG = "config.json"
LOCK = "run.lock"
C = TypeVar("C")


class RunFolder:
    def __init__(self, path: Path, track: str, resuming: bool) -> None:
        self.path, self.track, self.resuming = Path(path), track, resuming
        self._created = not self.path.exists()
        self._locked = False

    @classmethod
    def start(cls, track: str, out: str | Path | None = None, resume: str | Path | None = None,
              name: str = "run") -> "RunFolder":
        """``resume``: an existing run folder of this track.  Otherwise a new one at ``out`` (default
        ``runs/NAME-TIME``), which must be absent or empty: nothing of the user's is ever overwritten.
        Nothing is written here; the folder appears when the run writes its config."""
        if resume:
            return cls.open(track, resume)
        default = Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        path = Path(distributed.broadcast_object(str(out or default)))   # every rank: rank 0's clock
        if path.is_dir() and distributed.current().is_main:
            _clear_leftovers(path)
        return cls(fresh_folder(path), track, resuming=False)

    @classmethod
    def open(cls, track: str, path: str | Path) -> "RunFolder":
        """An existing run folder of this track, to resume or to read (sample, evaluate)."""
        run = cls(Path(path), track, resuming=True)
        run.saved_values()   # a missing folder, a damaged config or another track's run fails here
        return run

    # --- the config ---------------------------------------------------------------------------------------------
    def saved_values(self) -> dict[str, Any]:
        """The saved config.json of a run of this track, without its ``track`` key."""
        if not self.path.is_dir():
            raise UserError(f"run folder {self.path} does not exist")
        path = self.path / CONFIG
        if not path.is_file():
            raise UserError(f"{self.path} is not a run folder (no {CONFIG})")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{path} is not valid JSON ({exc}); the run folder is damaged") from None
        if not isinstance(values, dict):
            raise UserError(f"{path} does not hold a config object; the run folder is damaged")
        track = values.pop("track", None)
        if track != self.track:
            shown = track if isinstance(track, str) and track.isidentifier() else repr(track)
            what = f"{_article(shown)} {shown} run" if track else "not a run of any track"
            raise UserError(f"{self.path} is {what}, not {_article(self.track)} {self.track} run; use its own "
                            f"command")
        return values

    def saved_config(self, from_saved: Callable[[dict], C], facts: tuple[str, ...] = ()) -> tuple[C, dict]:
        """(the saved config, the saved track facts named in ``facts``)."""
        values = self.saved_values()
        saved_facts = {k: values.pop(k) for k in facts if k in values}
        return from_saved(values), saved_facts

    def resolve(self, cfg: C | None, overrides: dict | None, resumable: set[str], from_saved: Callable[[dict], C],
                facts: tuple[str, ...] = ()) -> tuple[C, dict]:
        """The config this run trains with: a new run's ``cfg`` with ``overrides``; a resumed run's saved config,
        where overrides may change only the ``resumable`` keys (length and reporting, never the maths)."""
        overrides = dict(overrides or {})
        if not self.resuming:
            assert cfg is not None
            return apply_overrides(cfg, overrides), {}
        saved, saved_facts = self.saved_config(from_saved, facts)
        frozen = sorted(set(overrides) - set(resumable))
        if frozen:
            raise UserError(f"cannot change {', '.join(frozen)} when resuming; only {', '.join(sorted(resumable))}")
        return apply_overrides(saved, overrides), saved_facts

    def write_config(self, cfg, **facts: Any) -> None:
        if distributed.current().is_main:
            write_json(self.path / CONFIG, {"track": self.track, **facts, **to_dict(cfg)})

    def write_note(self, name: str, text: str) -> None:
        """A small text file of facts about the run (e.g. ``data.txt``: which data it used)."""
        if distributed.current().is_main:
            write_text(self.path / name, text if text.endswith("\n") else text + "\n")

    def log(self, message: str) -> None:
        if distributed.current().is_main:
            log(message)

    # --- checkpoints and failure ---------------------------------------------------------------------------------
    def last_checkpoint(self) -> Path:
        return find_checkpoint(self.path)

    def mkdir(self) -> None:
        """Create the folder (rank 0) and take its lock: one process writes a run folder at a time."""
        if distributed.current().is_main and not self._locked:
            self.path.mkdir(parents=True, exist_ok=True)
            take_lock(self.path / LOCK)
            self._locked = True
            sweep_temporaries(self.path)

    def release(self) -> None:
        if self._locked:
            (self.path / LOCK).unlink(missing_ok=True)
            self._locked = False

    @contextmanager
    def removed_on_failure(self) -> Iterator["RunFolder"]:
        """A new run that fails before its first checkpoint leaves no folder behind (nothing in it is worth
        keeping, and a half-written run would be mistaken for one that can resume)."""
        try:
            yield self
        except BaseException:
            if self._locked and not self.resuming and not has_checkpoint(self.path):
                shutil.rmtree(self.path, ignore_errors=True)
                if not self._created:
                    self.path.mkdir(parents=True, exist_ok=True)   # the user's empty folder stays, empty
            raise


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _process_start(pid: int) -> str | None:
    """When a process started (clock ticks since boot), to tell a live holder from a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _live_holder(lock: Path) -> dict | None:
    """The holder a lock file names, if that process still runs; None for a lock left by a process that is gone
    (or one unreadable and older than a few seconds: a crash mid-write).  A lock being written this instant is
    read again after a moment."""
    for _ in range(2):
        try:
            holder = json.loads(lock.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            try:
                young = time.time() - lock.stat().st_mtime < 5
            except FileNotFoundError:
                return None
            if not young:
                return None
            time.sleep(0.2)
            continue
        pid = holder.get("pid") if isinstance(holder, dict) else None
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            return None
        return holder if _holder_alive(holder) else None
    return {"pid": "?", "host": "this machine"}   # still being written: treat as live


def _holder_alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True   # another machine's process: it cannot be checked from here, so it is not taken over
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    started = _process_start(int(holder["pid"]))
    return started is None or holder.get("started") in (None, started)


def take_lock(path: Path) -> None:
    """Create ``path`` exclusively, naming this process; a lock whose process is gone (a killed run) is taken over,
    a live one is a clear error."""
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _process_start(os.getpid())}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _live_holder(path)
            if holder is not None:
                raise UserError(f"run folder {path.parent} is in use by process {holder['pid']} on "
                                f"{holder.get('host')}; wait for it to end or stop it") from None
            path.unlink(missing_ok=True)   # stale: its process is gone
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(me, f)
        return
    raise UserError(f"could not take the lock {path}; another process keeps taking it")


def sweep_temporaries(folder: Path) -> None:
    """Remove the hidden temporaries (``core.files``) a killed writer left; called with the folder's lock held,
    so no live writer owns them."""
    for path in sorted(folder.rglob(".*"), key=lambda p: len(p.parts), reverse=True):
        if ".tmp" in path.name:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _clear_leftovers(folder: Path) -> None:
    """A folder holding nothing but a dead process's lock and temporaries (a run killed before it wrote its
    config) counts as empty: the same command can simply be run again."""
    entries = list(folder.iterdir())
    lock = folder / LOCK
    if not entries or any(e != lock and not (e.name.startswith(".") and ".tmp" in e.name) for e in entries):
        return
    if lock.exists() and _live_holder(lock) is not None:
        return   # a live run is starting there: fresh_folder refuses it
    sweep_temporaries(folder)
    lock.unlink(missing_ok=True)
