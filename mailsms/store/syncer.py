"""The SQLite store's fsync child: ``python syncer.py DB``, one fsync round per request line.

Why a process and not a thread. The gateway's loop is the busy thread; an fsync thread has to
win the GIL back from it after every ``fdatasync`` and then run the executor's bookkeeping,
and both cost the loop time it would rather spend on mail (measured: the thread version was
~12% of intake throughput at ``smtp-source -s 10 -d``). A child process holds no GIL of ours:
the loop writes one line, goes on with its work, and reads one line when the disk is done.
``fdatasync`` on our own descriptor of the WAL file makes durable every frame any process
wrote to it, so the child needs nothing from the parent but the request.

Protocol (stdin/stdout, one outstanding request at a time): the parent writes ``\\n``; the
child runs ``fdatasync`` on the WAL (and the directory fsync once, when it first opens it)
and answers ``ok\\n`` or ``error <text>\\n``; at most every 200 ms it also starts a PASSIVE
checkpoint on a thread with its own connection. EOF on stdin (the parent closed it, or
died, even by SIGKILL) ends the child, so it never outlives the gateway.

This file imports nothing from mailsms: it starts with ``python -I -S`` in a few ms.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
import time

# Seconds between PASSIVE checkpoints while commits flow: often enough that the checkpoint
# the gateway's own connection runs past its autocheckpoint limit has little left to copy.
CHECKPOINT_INTERVAL = 0.2


class Syncer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.wal_fd: int | None = None
        self.checkpointer: sqlite3.Connection | None = None
        self.last_checkpoint = 0.0
        self.checkpointing = threading.Lock()  # held while a checkpoint thread runs

    def round(self) -> str | None:
        """One fsync round; the error text if the data may not be on disk."""
        try:
            if self.wal_fd is None:
                self.wal_fd = os.open(self.path + "-wal", os.O_RDONLY | os.O_CREAT, 0o644)
                fsync_dir(self.path)  # the WAL's directory entry, once
            os.fdatasync(self.wal_fd)  # data and the size needed to read it, as SQLite does
        except OSError as exc:
            return f"fsync failed: {exc}"
        now = time.monotonic()
        if now - self.last_checkpoint > CHECKPOINT_INTERVAL and not self.checkpointing.locked():
            self.last_checkpoint = now
            self.checkpointing.acquire()
            threading.Thread(target=self.checkpoint, daemon=True).start()
        return None

    def checkpoint(self) -> None:
        """Copy WAL frames into the database without ever blocking the gateway's writes; a
        busy checkpoint is simply tried again after a later round.

        On a thread: a checkpoint writes and syncs the database file and took up to ~20 ms
        here, and fsync rounds (every SMTP 250 waits for one) must not queue behind it.
        sqlite3 releases the GIL while it works."""
        try:
            if self.checkpointer is None:
                self.checkpointer = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
                self.checkpointer.execute("PRAGMA synchronous = NORMAL")
            self.checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            print(f"mailsms syncer: checkpoint failed: {exc}", file=sys.stderr, flush=True)
        finally:
            self.checkpointing.release()


def fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: syncer.py DATABASE", file=sys.stderr)
        return 2
    # SIGTERM/SIGINT to the whole process group (systemd, Ctrl-C) are the gateway's to
    # handle: its last commits still need their fsync; EOF on stdin ends us after them.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    syncer = Syncer(argv[1])
    out = sys.stdout.buffer
    for _ in sys.stdin.buffer:
        error = syncer.round()
        out.write(b"ok\n" if error is None else f"error {error}\n".encode(errors="replace"))
        out.flush()
    syncer.checkpointing.acquire(timeout=30)  # let a running checkpoint finish first
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
