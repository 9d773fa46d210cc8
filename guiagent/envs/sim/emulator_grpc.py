"""MobileSim dressed as an Android emulator: gRPC services, the telnet console and adb registration.

A real emulator offers three control surfaces beside adbd, and the Android backend uses all three:

- **gRPC** (``emulator -grpc 8554``): ``EmulatorController`` (``getScreenshot`` ~20 ms instead of
  ``screencap``'s 0.5-2 s, ``sendTouch``, ``sendKey``, ``getStatus``) and ``SnapshotService``
  (``LoadSnapshot``/``SaveSnapshot``/``ListSnapshots``/``DeleteSnapshot``). The message and service
  definitions are the generated stubs shipped in PyPI ``android-env`` (``android_env.proto``), so a client
  written against a real emulator talks to this one unchanged.
- **The console** (telnet, on the even port N of ``emulator-N``): ``auth TOKEN``, ``avd snapshot
  load|save|list|delete NAME``, ``ping``, ``quit``. This is what ``adb emu avd snapshot load NAME`` talks to.
- **Registration with an adb server**: an emulator announces itself by sending ``host:emulator:ADBPORT``
  to the server, which then connects to adbd on ADBPORT and names the device ``emulator-(ADBPORT-1)``.

:func:`serve_emulator` starts all of them around one MobileSim (adbd on an odd port P, console on P-1),
sharing one snapshot store (snapshots are ``MobileSim.snapshot()`` dicts kept in memory).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

from guiagent.envs.sim.adbd import VirtualAdbd, accept_loop, close_listener
from guiagent.images import encode_png

log = logging.getLogger(__name__)

# Linux evdev key codes (input-event-codes.h) -> Android key codes, for KeyboardEvent.codeType == Evdev.
EVDEV_TO_ANDROID = {1: 111, 14: 67, 15: 61, 28: 66, 57: 62, 102: 3, 103: 19, 105: 21, 106: 22, 108: 20,
                    139: 82, 158: 4, 580: 187}
# W3C KeyboardEvent.key names the emulator accepts -> Android key codes.
KEY_NAMES_TO_ANDROID = {"GoHome": 3, "Home": 3, "GoBack": 4, "Escape": 111, "Enter": 66, "Backspace": 67,
                        "Tab": 61, "AppSwitch": 187, "ContextMenu": 82, "Menu": 82, "ArrowUp": 19,
                        "ArrowDown": 20, "ArrowLeft": 21, "ArrowRight": 22, "Delete": 112}
TAP_SLOP_PX = 20  # a touch that moves less than this and lifts quickly is a tap, as Android's touch slop
LONG_PRESS_MS = 500  # ViewConfiguration's default long-press timeout
DEFAULT_TOKEN_FILE = "~/.emulator_console_auth_token"
MAX_CONSOLE_LINE = 4096  # bytes in one console command line; a longer one ends the session


class SnapshotStore:
    """Named snapshots of one simulator (``MobileSim.snapshot()`` dicts), shared by console and gRPC."""

    def __init__(self, sim: Any):
        self.sim = sim
        self._snapshots: dict[str, dict] = {}
        self._lock = threading.Lock()

    def save(self, name: str) -> None:
        with self._lock:
            self._snapshots[name] = self.sim.snapshot()

    def load(self, name: str) -> None:
        """Restore snapshot ``name``. Raises KeyError when there is none by that name."""
        with self._lock:
            state = self._snapshots[name]
        self.sim.restore(state)

    def delete(self, name: str) -> None:
        with self._lock:
            del self._snapshots[name]

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._snapshots)


# --- gRPC ----------------------------------------------------------------------------------------------------


def _grpc_servicers(sim: Any, store: SnapshotStore) -> tuple[Any, Any]:
    """Build the EmulatorController and SnapshotService servicers (imports deferred: grpc is optional)."""
    from android_env.proto import emulator_controller_pb2 as ec
    from android_env.proto import emulator_controller_pb2_grpc as ec_grpc
    from android_env.proto import snapshot_service_pb2 as ss
    from android_env.proto import snapshot_service_pb2_grpc as ss_grpc
    from google.protobuf import empty_pb2

    started = time.time()

    class Controller(ec_grpc.EmulatorControllerServicer):
        def __init__(self) -> None:
            self._touches: dict[int, list[float]] = {}  # identifier -> [x0, y0, t0, x, y]
            self._lock = threading.Lock()
            self._seq = 0

        def getScreenshot(self, request, context):
            width, height = sim.size
            if request.format == ec.ImageFormat.PNG and not (request.width and request.height):
                data = sim.screenshot_png()
            else:
                img = sim.screenshot_rgb()
                if request.width and request.height and (request.width, request.height) != img.size:
                    img = img.resize((request.width, request.height))
                width, height = img.size
                if request.format == ec.ImageFormat.PNG:
                    data = encode_png(img)
                else:
                    data = img.convert("RGBA" if request.format == ec.ImageFormat.RGBA8888 else "RGB").tobytes()
            with self._lock:
                self._seq += 1
                seq = self._seq
            fmt = ec.ImageFormat(format=request.format, width=width, height=height, display=request.display)
            return ec.Image(format=fmt, width=width, height=height, image=data, seq=seq,
                            timestampUs=int(time.time() * 1e6))

        def sendTouch(self, request, context):
            now = time.monotonic()
            for touch in request.touches:
                with self._lock:
                    state = self._touches.get(touch.identifier)
                    if touch.pressure > 0:
                        if state is None:
                            self._touches[touch.identifier] = [touch.x, touch.y, now, touch.x, touch.y]
                        else:
                            state[3], state[4] = touch.x, touch.y
                        continue
                    self._touches.pop(touch.identifier, None)
                if state is None:
                    continue  # a lift without a press changes nothing, as on a real touch screen
                x0, y0, t0 = state[0], state[1], state[2]
                duration_ms = int((now - t0) * 1000)
                if math.hypot(touch.x - x0, touch.y - y0) < TAP_SLOP_PX and duration_ms < LONG_PRESS_MS:
                    sim.tap(x0, y0)
                else:
                    sim.swipe(x0, y0, touch.x, touch.y, max(duration_ms, 1))
            return empty_pb2.Empty()

        def sendKey(self, request, context):
            if request.text:
                sim.input_text(request.text)
                return empty_pb2.Empty()
            if request.eventType == ec.KeyboardEvent.keydown:
                return empty_pb2.Empty()  # act once per key, on keyup or keypress
            if request.codeType == ec.KeyboardEvent.Evdev and request.keyCode:
                code = EVDEV_TO_ANDROID.get(request.keyCode)
                if code is None:
                    context.abort(_status().INVALID_ARGUMENT, f"unmapped evdev key code {request.keyCode}")
                sim.keyevent(code)
            elif request.key in KEY_NAMES_TO_ANDROID:
                sim.keyevent(KEY_NAMES_TO_ANDROID[request.key])
            elif len(request.key) == 1:
                sim.input_text(request.key)
            else:
                context.abort(_status().INVALID_ARGUMENT, f"unknown key {request.key!r}")
            return empty_pb2.Empty()

        def getStatus(self, request, context):
            return ec.EmulatorStatus(version="MobileSim", uptime=int((time.time() - started) * 1000), booted=True)

    class Snapshots(ss_grpc.SnapshotServiceServicer):
        def LoadSnapshot(self, request, context):
            try:
                store.load(request.snapshot_id)
            except KeyError:
                return ss.SnapshotPackage(snapshot_id=request.snapshot_id, success=False,
                                          err=f"no snapshot named {request.snapshot_id!r}".encode())
            return ss.SnapshotPackage(snapshot_id=request.snapshot_id, success=True)

        def SaveSnapshot(self, request, context):
            store.save(request.snapshot_id)
            return ss.SnapshotPackage(snapshot_id=request.snapshot_id, success=True)

        def DeleteSnapshot(self, request, context):
            try:
                store.delete(request.snapshot_id)
            except KeyError:
                return ss.SnapshotPackage(snapshot_id=request.snapshot_id, success=False, err=b"no such snapshot")
            return ss.SnapshotPackage(snapshot_id=request.snapshot_id, success=True)

        def ListSnapshots(self, request, context):
            return ss.SnapshotList(snapshots=[ss.SnapshotDetails(snapshot_id=n) for n in store.names()])

    return Controller(), Snapshots()


def _status():
    import grpc

    return grpc.StatusCode


def serve_grpc(sim: Any, store: SnapshotStore, host: str = "127.0.0.1", port: int = 0, max_concurrent_rpcs: int = 16,
               idle_timeout: float = 300.0):
    """Start the EmulatorController and SnapshotService on ``host:port``.

    Args:
        sim: The ``MobileSim``.
        store: Snapshot store the SnapshotService acts on.
        host: Loopback address to listen on.
        port: TCP port; 0 picks a free one.
        max_concurrent_rpcs: RPCs running or queued at once; more are answered ``RESOURCE_EXHAUSTED`` at once
            instead of waiting in an unbounded queue behind a slow one.
        idle_timeout: Seconds after which a connection with no RPC gets a GOAWAY; gRPC clients reconnect
            transparently on their next call, so this only reaps connections their clients forgot.

    Returns:
        ``(server, port)``: the running ``grpc.Server`` (stop it with ``server.stop(grace)``) and its port.
    """
    import grpc
    from android_env.proto import emulator_controller_pb2_grpc as ec_grpc
    from android_env.proto import snapshot_service_pb2_grpc as ss_grpc

    controller, snapshots = _grpc_servicers(sim, store)
    options = [
        # Screenshots at 1080x2400 are ~100-300 kB PNG or 7.8 MB RGB888: raise gRPC's 4 MB default for answers.
        # Requests stay small (touches, keys, names), so the 4 MB limit on what a client may send stays.
        ("grpc.max_send_message_length", 64 << 20),
        ("grpc.max_receive_message_length", 4 << 20),
        ("grpc.max_connection_idle_ms", int(idle_timeout * 1000)),
        # Ping quiet clients so a peer that vanished without closing its connection is noticed and dropped.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options,
                         maximum_concurrent_rpcs=max_concurrent_rpcs)
    ec_grpc.add_EmulatorControllerServicer_to_server(controller, server)
    ss_grpc.add_SnapshotServiceServicer_to_server(snapshots, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC server to {host}:{port}")
    server.start()
    return server, bound


# --- The emulator console ------------------------------------------------------------------------------------


class EmulatorConsole:
    """The emulator's telnet console: authentication plus the ``avd snapshot`` commands.

    Args:
        store: Snapshot store the ``avd snapshot`` commands act on.
        port: TCP port (the N of ``emulator-N``); 0 picks a free one.
        auth_token: Token clients must send with ``auth``; None disables authentication, as an emulator whose
            token file is empty does.
        max_clients: Sessions served at once; a client over the limit is told so and disconnected.
        idle_timeout: Seconds a session may wait for its next line before it is closed (``adb emu`` sends
            its lines at once; this reaps clients that connect and say nothing, or stop mid-line).

    Attributes:
        counters: Since construction: ``accept_errors``, ``refused`` (clients over ``max_clients``),
            ``timeouts`` (sessions closed by ``idle_timeout``), ``protocol_errors`` (lines over
            :data:`MAX_CONSOLE_LINE` bytes).
    """

    def __init__(self, store: SnapshotStore, port: int = 0, host: str = "127.0.0.1", auth_token: str | None = None,
                 max_clients: int = 8, idle_timeout: float = 300.0):
        if max_clients < 1 or idle_timeout <= 0:
            raise ValueError("max_clients must be >= 1 and idle_timeout > 0")
        self.store = store
        self.auth_token = auth_token
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        self.counters = {"accept_errors": 0, "refused": 0, "timeouts": 0, "protocol_errors": 0}
        self._listener = socket.create_server((host, port))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=accept_loop,
                                        args=(self._listener, self._closed, self._accept, self.counters),
                                        name="emu-console", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        close_listener(self._listener)
        self._thread.join(timeout=2)
        with self._lock:
            clients = list(self._clients)
        for sock in clients:
            sock.close()

    def _accept(self, sock: socket.socket) -> None:
        with self._lock:
            full = len(self._clients) >= self.max_clients
            if not full:
                self._clients.add(sock)
        if full:
            self.counters["refused"] += 1
            log.warning("emulator console on port %d refuses a client: %d already connected", self.port,
                        self.max_clients)
            with sock:
                sock.settimeout(1.0)  # a best-effort notice; a client that does not read gets nothing
                try:
                    sock.sendall(b"KO: too many console connections\r\n")
                except OSError:
                    pass
            return
        try:
            threading.Thread(target=self._session, args=(sock,), name="emu-console-session", daemon=True).start()
        except BaseException:
            with self._lock:
                self._clients.discard(sock)
            raise

    def _session(self, sock: socket.socket) -> None:
        authed = self.auth_token is None
        # Every read waits at most idle_timeout, and every send at most as long (a client that stops reading).
        sock.settimeout(self.idle_timeout)
        try:
            with sock.makefile("rb") as reader:
                if authed:
                    sock.sendall(b"Android Console: type 'help' for a list of commands\r\nOK\r\n")
                else:
                    sock.sendall(b"Android Console: Authentication required\r\n"
                                 b"Android Console: type 'auth <auth_token>' to authenticate\r\n"
                                 b"Android Console: you can find your <auth_token> in \r\n"
                                 + f"'{Path(DEFAULT_TOKEN_FILE).expanduser()}'\r\n".encode() + b"OK\r\n")
                while True:
                    raw = reader.readline(MAX_CONSOLE_LINE + 1)
                    if not raw:
                        return
                    if len(raw) > MAX_CONSOLE_LINE:
                        self.counters["protocol_errors"] += 1
                        sock.sendall(b"KO: line too long\r\n")
                        return
                    words = raw.decode("utf-8", errors="replace").split()
                    if not words:
                        continue
                    if words[0] in ("quit", "exit"):
                        return
                    if words[0] == "auth":
                        authed = len(words) > 1 and words[1] == self.auth_token
                        reply = "Android Console: type 'help' for a list of commands\r\nOK\r\n" if authed else \
                            "KO: authentication token does not match ~/.emulator_console_auth_token\r\n"
                    elif not authed:
                        reply = "KO: unknown command, try 'help'\r\n"
                    else:
                        reply = self._command(words)
                    sock.sendall(reply.encode())
        except TimeoutError:
            self.counters["timeouts"] += 1
            log.info("emulator console closes a session idle for %g s", self.idle_timeout)
        except OSError as exc:
            log.debug("console session ended: %s", exc)
        finally:
            sock.close()  # after the counters: a client that sees the close may read them
            with self._lock:
                self._clients.discard(sock)

    def _command(self, words: list[str]) -> str:
        if words == ["ping"]:
            return "I am alive!\r\nOK\r\n"
        if words[:2] == ["avd", "status"]:
            return "virtual device is running\r\nOK\r\n"
        if words[:2] != ["avd", "snapshot"] or len(words) < 3:
            return "KO: unknown command, try 'help'\r\n"
        verb, names = words[2], words[3:]
        if verb == "list":
            return "".join(f"{n}\r\n" for n in self.store.names()) + "OK\r\n"
        if len(names) != 1:
            return f"KO: 'avd snapshot {verb}' needs one snapshot name\r\n"
        try:
            {"load": self.store.load, "save": self.store.save, "delete": self.store.delete}[verb](names[0])
        except KeyError:
            return f"KO: snapshot '{names[0]}' does not exist\r\n" if verb != "save" else "KO: bad command\r\n"
        return "OK\r\n"


# --- The whole emulator --------------------------------------------------------------------------------------


class VirtualEmulator:
    """adbd + console + gRPC around one MobileSim; see :func:`serve_emulator`.

    Attributes:
        serial: The adb serial a registered server uses (``emulator-CONSOLEPORT``).
        adbd: The virtual adbd (odd port P).
        console: The telnet console (port P-1).
        grpc_port: Port of the gRPC services, or None when they were not started.
        store: The snapshot store shared by console and gRPC.
    """

    def __init__(self, sim: Any, adbd: VirtualAdbd, console: EmulatorConsole, grpc_server: Any, grpc_port: int | None,
                 store: SnapshotStore):
        self.sim, self.adbd, self.console, self.store = sim, adbd, console, store
        self._grpc_server, self.grpc_port = grpc_server, grpc_port
        self.serial = f"emulator-{console.port}"

    @property
    def grpc_endpoint(self) -> str | None:
        return f"127.0.0.1:{self.grpc_port}" if self.grpc_port else None

    def register(self, adb_server_port: int, timeout: float = 5.0) -> None:
        """Announce this emulator to the adb server on ``adb_server_port`` (``host:emulator:ADBPORT``)."""
        request = f"host:emulator:{self.adbd.port}".encode()
        with socket.create_connection(("127.0.0.1", adb_server_port), timeout=timeout) as sock:
            sock.sendall(b"%04x" % len(request) + request)

    def close(self) -> None:
        self.adbd.close()
        self.console.close()
        if self._grpc_server is not None:
            self._grpc_server.stop(0.5).wait(2)

    def __enter__(self) -> VirtualEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _adjacent_ports(host: str) -> tuple[socket.socket, socket.socket]:
    """Bind a (console, adbd) pair of listening sockets on ports (2k, 2k+1), as emulators use."""
    for _ in range(200):
        probe = socket.create_server((host, 0))
        port = probe.getsockname()[1]
        probe.close()
        base = port - (port % 2)
        try:
            console = socket.create_server((host, base))
        except OSError:
            continue
        try:
            adbd = socket.create_server((host, base + 1))
        except OSError:
            console.close()
            continue
        return console, adbd
    raise OSError("no free pair of adjacent ports for console and adbd")


def serve_emulator(sim: Any, host: str = "127.0.0.1", adb_port: int = 0, grpc_port: int = 0, grpc: bool = True,
                   auth_token: str | None = None, adb_keyboard: bool = True) -> VirtualEmulator:
    """Serve ``sim`` as an emulator: adbd on an odd port P, console on P-1, gRPC on a free port.

    Args:
        sim: The ``MobileSim``.
        host: Loopback address to listen on.
        adb_port: adbd's port P (odd; the console takes P-1); 0 picks a free adjacent pair.
        grpc_port: Port of the gRPC services; 0 picks a free one.
        grpc: Start the gRPC services (needs ``grpcio`` and ``android-env``).
        auth_token: Console token; None reads ``~/.emulator_console_auth_token`` as the emulator does (the adb
            client sends that file's content), and an absent or empty file means no authentication.
        adb_keyboard: Pretend the ADBKeyboard input method is installed.
    """
    if auth_token is None:
        token_file = Path(os.path.expanduser(DEFAULT_TOKEN_FILE))
        auth_token = token_file.read_text().strip() if token_file.is_file() else ""
    if adb_port:
        if adb_port % 2 == 0:
            raise ValueError(f"an emulator's adb port is odd (its console takes port - 1), got {adb_port}")
        console_port = adb_port - 1
    else:
        console_sock, adbd_sock = _adjacent_ports(host)
        console_port, adb_port = console_sock.getsockname()[1], adbd_sock.getsockname()[1]
        # Release and immediately re-bind inside the servers: they own their sockets.
        console_sock.close()
        adbd_sock.close()
    store = SnapshotStore(sim)
    adbd = VirtualAdbd(sim, host=host, port=adb_port, adb_keyboard=adb_keyboard)
    console = EmulatorConsole(store, port=console_port, host=host, auth_token=auth_token or None)
    server, bound = serve_grpc(sim, store, host=host, port=grpc_port) if grpc else (None, None)
    return VirtualEmulator(sim, adbd, console, server, bound, store)

