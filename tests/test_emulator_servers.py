"""The emulator's console and gRPC services under clients that misbehave: too many, silent, or greedy.

The adbd beside them is covered in tests/test_adbd_protocol.py; the emulator's normal behaviour through a real
adb server in tests/test_android_env.py.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from guiagent.envs.sim.device import MobileSim
from guiagent.envs.sim.emulator_grpc import MAX_CONSOLE_LINE, EmulatorConsole, SnapshotStore, serve_grpc

pytestmark = pytest.mark.timeout(60)


def _read_until_closed(sock: socket.socket, within: float) -> bytes | None:
    """Everything the server sends until it closes ``sock``; None if it is still open after ``within`` s."""
    sock.settimeout(within)
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        return None
    return bytes(data)


def _read_line(sock: socket.socket, until: bytes = b"OK\r\n") -> bytes:
    data = bytearray()
    while not data.endswith(until):
        chunk = sock.recv(4096)
        assert chunk, f"closed after {bytes(data)!r}"
        data += chunk
    return bytes(data)


@pytest.fixture()
def store() -> SnapshotStore:
    return SnapshotStore(MobileSim())


def _connect(console: EmulatorConsole) -> socket.socket:
    return socket.create_connection(("127.0.0.1", console.port), timeout=5)


def test_console_clients_over_the_cap_are_told_and_disconnected(store):
    console = EmulatorConsole(store, max_clients=1)
    try:
        with _connect(console) as first:
            _read_line(first)  # banner
            with _connect(console) as second:
                assert _read_until_closed(second, within=5) == b"KO: too many console connections\r\n"
            first.sendall(b"ping\r\n")
            assert _read_line(first) == b"I am alive!\r\nOK\r\n"  # the served client is unaffected
            first.sendall(b"quit\r\n")
            assert _read_until_closed(first, within=5) == b""
        assert console.counters["refused"] == 1
        deadline = time.monotonic() + 5
        while True:  # the slot frees once the first session has ended
            with _connect(console) as third:
                banner = third.recv(4096)
                if banner.startswith(b"Android Console"):
                    break
            assert time.monotonic() < deadline, "a finished session never freed its slot"
            time.sleep(0.05)
    finally:
        console.close()


def test_silent_console_client_is_closed_after_the_idle_timeout(store):
    console = EmulatorConsole(store, idle_timeout=0.5)
    try:
        with _connect(console) as sock:
            _read_line(sock)
            start = time.monotonic()
            assert _read_until_closed(sock, within=5) == b""
            assert 0.4 < time.monotonic() - start < 3
        assert console.counters["timeouts"] == 1
    finally:
        console.close()


def test_console_line_without_end_is_refused(store):
    console = EmulatorConsole(store)
    try:
        with _connect(console) as sock:
            _read_line(sock)
            sock.sendall(b"a" * (4 * MAX_CONSOLE_LINE))  # never a newline: used to be buffered without limit
            assert _read_until_closed(sock, within=5) == b"KO: line too long\r\n"
        assert console.counters["protocol_errors"] == 1
    finally:
        console.close()


class _SlowScreen:
    """A phone whose screenshots block until released, counting the calls that are waiting."""

    size = (64, 64)

    def __init__(self) -> None:
        self.waiting = threading.Semaphore(0)
        self.release = threading.Event()

    def screenshot_png(self) -> bytes:
        self.waiting.release()
        self.release.wait(20)
        return b"\x89PNG"


def test_grpc_calls_over_the_limit_are_refused_at_once():
    grpc = pytest.importorskip("grpc")
    ec = pytest.importorskip("android_env.proto.emulator_controller_pb2")
    from android_env.proto import emulator_controller_pb2_grpc as ec_grpc

    sim = _SlowScreen()
    server, port = serve_grpc(sim, SnapshotStore(sim), max_concurrent_rpcs=2)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = ec_grpc.EmulatorControllerStub(channel)
        request = ec.ImageFormat(format=ec.ImageFormat.PNG)
        slow = [stub.getScreenshot.future(request, timeout=30) for _ in range(2)]
        for _ in slow:
            assert sim.waiting.acquire(timeout=10)
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            stub.getScreenshot(request, timeout=10)  # used to queue behind the slow calls
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() - start < 2
        sim.release.set()
        assert [future.result().image for future in slow] == [b"\x89PNG"] * 2
        assert stub.getScreenshot(request, timeout=10).image == b"\x89PNG"  # served again once the load is gone
    finally:
        sim.release.set()
        channel.close()
        server.stop(0).wait(5)
