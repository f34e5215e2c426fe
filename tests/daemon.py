"""Run ``segdl daemon`` (and, for comparison, ``aria2c --enable-rpc``) as real processes on
loopback, each with its own directories, and call them over JSON-RPC with urllib only."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SECRET = "test-secret-123"
_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/")


class RpcFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.error = error


class RpcProcess:
    """A process serving JSON-RPC at http://127.0.0.1:<port>/jsonrpc."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jsonrpc"

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST raw bytes; the HTTP status and the decoded JSON answer."""
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json", **(headers or {})}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            text = exc.read()
            return exc.code, json.loads(text) if text else None

    def raw(self, method: str, *params: Any, token: bool = True) -> dict[str, Any]:
        args = [f"token:{self.secret}", *params] if token else list(params)
        body = json.dumps({"jsonrpc": "2.0", "id": "t", "method": method, "params": args})
        return dict(self.post(body.encode())[1])

    def call(self, method: str, *params: Any) -> Any:
        answer = self.raw(method, *params)
        if "error" in answer:
            raise RpcFailed(answer["error"])
        return answer["result"]

    def wait_status(self, gid: str, wanted: set[str], timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.call("aria2.tellStatus", gid)
            if status["status"] in wanted or time.monotonic() > deadline:
                return dict(status)
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> RpcProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Daemon(RpcProcess):
    """``python -m segdl daemon`` with a download root and a state directory."""

    def __init__(self, root: Path, state: Path, *args: str, secret: str = SECRET) -> None:
        super().__init__(secret)
        self.root = root
        self.state = state
        self.args = args
        self.log: list[str] = []

    def start(self) -> Daemon:
        self.root.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "segdl", "daemon", "--dir", str(self.root)]
        command += ["--state-dir", str(self.state), "--rpc-listen", "127.0.0.1:0"]
        if self.secret:
            command += ["--rpc-secret", self.secret]
        self.process = subprocess.Popen(
            [*command, *self.args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            match = _LISTENING.search(line)
            if match:
                self.port = int(match.group(1))
                break
        else:
            raise RuntimeError("segdl daemon did not start: " + "".join(self.log))
        os.set_blocking(self.process.stderr.fileno(), False)
        return self

    def __enter__(self) -> Daemon:
        return self.start()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Aria2c(RpcProcess):
    """Debian's ``aria2c --enable-rpc`` on loopback, for side-by-side comparisons."""

    def __init__(self, root: Path, *args: str, secret: str = SECRET) -> None:
        super().__init__(secret)
        self.root = root
        self.args = args

    def start(self) -> Aria2c:
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            self.port = free_port()
            command = [
                "aria2c",
                "--enable-rpc",
                f"--rpc-listen-port={self.port}",
                f"--rpc-secret={self.secret}",
                "--rpc-listen-all=false",
                f"--dir={self.root}",
                "--no-conf",
                "--quiet",
                "--check-certificate=false",
                *self.args,
            ]
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    self.call("aria2.getVersion")
                    return self
                except (OSError, RpcFailed):
                    time.sleep(0.05)
        raise RuntimeError("aria2c did not start")

    def __enter__(self) -> Aria2c:
        return self.start()
