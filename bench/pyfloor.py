"""The least one Python process does to fetch many small files: ``python -m bench.pyfloor``.

``python -m bench.pyfloor [--durable] LIST OUT PARALLEL [DEPTH]``: every URL of ``LIST`` (one
server, plain ``http``) over ``PARALLEL`` keep-alive connections, ``DEPTH`` (default 8)
requests pipelined on each, answers parsed by httptools as the lean path parses them, each
body written to a new file named by the URL's last segment in ``OUT`` (open, write, close).
Nothing else: no status, length or digest check, no sync, no rename, no journal, no retry; a
server that closes a connection or answers out of order fails it.

``--durable`` keeps segdl's promise the way segdl keeps it, and nothing more: each body is
written into an unnamed file (``O_TMPFILE``), and every 64 files one ``syncfs`` makes them
durable before they are linked to their names and the directory is synced (in line: no
thread waits for the disk meanwhile).

``--processes N`` splits the list into N shares fetched by N processes at once, each with
its share of the connections: what a Python downloader could reach with every core (curl
and the other C tools use one).

It is the floor for a Python downloader on the machine at hand (what the interpreter, the
parser and the file system cost, nothing of segdl), beside which bench.smallfiles puts segdl
and the C tools: how far segdl is from what Python can do, and how far that is from curl.
"""

from __future__ import annotations

import ctypes
import os
import selectors
import socket
import sys
from collections import deque
from collections.abc import Sequence
from urllib.parse import urlsplit

import httptools

GROUP_FILES = 64


class _Files:
    """Where the bodies go: plain new files, or (durable) unnamed ones named by the group."""

    def __init__(self, out: str, durable: bool) -> None:
        self.out, self.durable = out, durable
        self.directory = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        self.group: list[tuple[int, str]] = []
        self.libc = ctypes.CDLL(None, use_errno=True)

    def write(self, name: str, body: bytes) -> None:
        if not self.durable:
            fd = os.open(os.path.join(self.out, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, body)
            finally:
                os.close(fd)
            return
        fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o644, dir_fd=self.directory)
        os.write(fd, body)
        self.group.append((fd, name))
        if len(self.group) >= GROUP_FILES:
            self.commit()

    def commit(self) -> None:
        if self.group and self.libc.syncfs(self.directory) != 0:
            raise OSError(ctypes.get_errno(), "syncfs failed")
        for fd, name in self.group:
            os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=self.directory, follow_symlinks=True)
            os.close(fd)
        if self.group:
            os.fsync(self.directory)
        self.group.clear()


class _Connection:
    """One socket: the paths it still has to ask for and the answers it waits for."""

    def __init__(self, address: tuple[str, int], host: str, paths: list[str], files: _Files,
                 depth: int) -> None:  # fmt: skip
        self.sock = socket.create_connection(address)
        self.sock.setblocking(False)
        self.host, self.files, self.depth = host, files, depth
        self.todo = deque(paths)
        self.waiting: deque[str] = deque()
        self.body: list[bytes] = []
        self.parser = httptools.HttpResponseParser(self)
        self.done = 0

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.files.write(self.waiting.popleft().rsplit("/", 1)[-1], b"".join(self.body))
        self.body.clear()
        self.done += 1

    def ask(self) -> None:
        """Send requests until ``depth`` wait for their answers."""
        wire = []
        while self.todo and len(self.waiting) < self.depth:
            path = self.todo.popleft()
            self.waiting.append(path)
            wire.append(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode("latin-1"))
        if wire:
            self.sock.sendall(b"".join(wire))


def fetch_all(
    urls: Sequence[str], out: str, parallel: int, depth: int = 8, durable: bool = False
) -> int:
    """Fetch every URL (all of one server) into ``out``; the number of files written."""
    files = _Files(out, durable)
    first = urlsplit(urls[0])
    address = (first.hostname or "127.0.0.1", first.port or 80)
    paths = [urlsplit(url).path for url in urls]
    connections = [
        _Connection(address, first.netloc, paths[i::parallel], files, depth)
        for i in range(min(parallel, len(paths)))
    ]
    selector = selectors.DefaultSelector()
    for connection in connections:
        connection.ask()
        selector.register(connection.sock, selectors.EVENT_READ, connection)
    left = len(paths)
    while left:
        for key, _ in selector.select():
            connection = key.data
            data = connection.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the server closed a connection with answers owed")
            before = connection.done
            connection.parser.feed_data(data)
            left -= connection.done - before
            connection.ask()
    files.commit()
    os.close(files.directory)
    for connection in connections:
        connection.sock.close()
    return len(paths)


def in_processes(processes: int, urls: Sequence[str], out: str, parallel: int, depth: int,
                 durable: bool) -> int:  # fmt: skip
    """:func:`fetch_all` over ``processes`` forked processes, a share of the URLs and of the
    connections each; 0 if every one fetched its share."""
    children = []
    for share in range(processes):
        pid = os.fork()
        if pid == 0:  # the child: its share, then out, whatever happens
            code = 1
            try:
                fetch_all(urls[share::processes], out, max(1, parallel // processes), depth,
                          durable)  # fmt: skip
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    failed = [os.waitpid(pid, 0)[1] for pid in children]
    return 1 if any(failed) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    durable = "--durable" in args
    args = [arg for arg in args if arg != "--durable"]
    processes = 1
    if "--processes" in args:
        at = args.index("--processes")
        processes = int(args[at + 1])
        del args[at : at + 2]
    if len(args) not in (3, 4):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as listing:
        urls = [line.strip() for line in listing if line.strip()]
    os.makedirs(args[1], exist_ok=True)
    depth = int(args[3]) if len(args) == 4 else 8
    if processes > 1:
        return in_processes(processes, urls, args[1], int(args[2]), depth, durable)
    fetch_all(urls, args[1], int(args[2]), depth, durable)
    return 0


if __name__ == "__main__":
    sys.exit(main())
