"""Starts a real `tally serve` on a temporary data directory for the end-to-end suite.

The binary comes from $TALLY_BIN (default: target/release/tally, then target/debug/tally).
With TALLY_E2E_BACKEND=aws the server runs on DynamoDB at $AWS_ENDPOINT_URL (moto's server in
tests/run), with a table of its own.
"""

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from lago_python_client.client import Client

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "e2e-secret-key"


def tally_binary() -> str:
    if os.environ.get("TALLY_BIN"):
        return os.environ["TALLY_BIN"]
    for profile in ("release", "debug"):
        candidate = ROOT / "target" / profile / "tally"
        if candidate.exists():
            return str(candidate)
    raise RuntimeError("build tally first: cargo build --release --bin tally")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def queue_name() -> str:
    """On the AWS backend: the name of the suite's table, queue, bucket and bus."""
    return f"tally-e2e-{os.getpid()}"


def storage_args(data_dir: str) -> list:
    """Where the server keeps its data: the embedded store, or DynamoDB."""
    args = ["--data-dir", data_dir]
    if os.environ.get("TALLY_E2E_BACKEND") == "aws":
        name = queue_name()
        args += ["--backend", "aws", "--table", name, "--queue", name, "--bucket", name, "--event-bus", name,
                 "--create-resources"]
    return args


def server_env() -> dict:
    env = dict(os.environ, TALLY_API_KEY=API_KEY, RUST_LOG="warn")
    if env.get("TALLY_E2E_BACKEND") == "aws":
        env.setdefault("AWS_ACCESS_KEY_ID", "test")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "test")
        env.setdefault("AWS_REGION", "us-east-1")
    return env


class Server:
    def __init__(self, data_dir: str, url: str, process: subprocess.Popen):
        self.data_dir = data_dir
        self.url = url
        self.process = process

    def bill(self, at: str) -> str:
        """Runs `tally bill --at` on the server's data, while the server runs."""
        done = subprocess.run(
            [tally_binary(), "bill", "--at", at] + storage_args(self.data_dir),
            capture_output=True, text=True, timeout=120, check=True, env=server_env(),
        )
        return done.stdout

    def cli(self, args: list) -> str:
        """Runs a `tally` subcommand on the server's data, while the server runs."""
        done = subprocess.run(
            [tally_binary()] + args + storage_args(self.data_dir),
            capture_output=True, text=True, timeout=120, check=True, env=server_env(),
        )
        return done.stdout

    def get(self, path: str, key: str = API_KEY, **params) -> httpx.Response:
        return httpx.get(f"{self.url}/api/v1/{path}", params=params, headers={"Authorization": f"Bearer {key}"})

    def wait_for_events(self, count: int, **filters) -> None:
        """Waits until `count` events match: on AWS, accepted events are metered from the queue
        a moment later (as in Lago, where workers process them); on the embedded store at once."""
        eventually(lambda: self.get("events", **filters).json()["meta"]["total_count"] == count)


def eventually(check, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def server():
    data_dir = tempfile.mkdtemp(prefix="tally-e2e-")
    port = free_port()
    # A long close interval: the suite drives the period close itself with `tally bill`.
    process = subprocess.Popen(
        [tally_binary(), "serve", "--addr", f"127.0.0.1:{port}", "--close-every", "3600"] + storage_args(data_dir),
        env=server_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError("tally serve did not start: " + (process.stdout.read() if process.stdout else ""))
    yield Server(data_dir, url, process)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def client(server) -> Client:
    return Client(api_key=API_KEY, api_url=server.url)
