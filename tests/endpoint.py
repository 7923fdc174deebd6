"""Starting and stopping the embedded endpoint as the tests need it: a real `rastro warehouse
serve` process on a free port, as every other process in the platform would reach it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Endpoint:
    """A running `rastro warehouse serve` process."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_endpoint(
    data_dir: Path, port: int | None = None, users: str = "default:", timeout: float = 60
) -> Endpoint:
    port = port or free_port()
    log_path = data_dir.parent / f"{data_dir.name}-{port}.log"
    env = {**os.environ, "RASTRO_WAREHOUSE_USERS": users}
    env.pop("RASTRO_CLICKHOUSE_URL", None)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rastro.cli",
                "warehouse",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    endpoint = Endpoint(process, port, data_dir, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the endpoint exited with {process.returncode}:\n{endpoint.log()}")
        try:
            with urlopen(f"{endpoint.url}/ping", timeout=1) as response:
                if response.read() == b"Ok.\n":
                    return endpoint
        except (URLError, OSError):
            time.sleep(0.1)
    endpoint.kill()
    raise RuntimeError(f"the endpoint did not answer within {timeout} s:\n{endpoint.log()}")
