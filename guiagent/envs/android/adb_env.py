"""The Android backend: one device (emulator, phone, MobileSim's virtual adbd) driven through adbutils.

Every device call goes through :meth:`AndroidEnv.shell` (shell protocol v2, so exit codes are real and a
connection that closes before the exit packet is recognised as a lost device) or the gRPC/console helpers,
each with ``config.timeout``; failures become :class:`~guiagent.errors.DeviceTimeout`,
:class:`~guiagent.errors.DeviceLost` or :class:`~guiagent.errors.DeviceNotReady` raised ``from`` the
underlying error. Idempotent reads (screenshots, UI dumps, properties) are retried after a reconnect; actions
are never retried, because a tap that may have landed must not land twice. Retries and reconnects are
counted in :attr:`AndroidEnv.counters` for the farm's metrics.

Text entry: printable ASCII goes through ``input text`` (spaces as ``%s``, shell-quoted, split so that a
literal ``%s`` survives Android's own unescaping; ``\\n``/``\\t`` as key events); anything else needs an input
method that accepts broadcasts (ADBKeyboard: ``am broadcast -a ADB_INPUT_B64 --es msg BASE64``), and
without one the action is rejected rather than typed wrongly.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
import shlex
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from guiagent.actions.gestures import scroll_stroke
from guiagent.envs.android.config import AndroidEnvConfig, AndroidInputConfig
from guiagent.envs.base import Env, TaskEvaluation, evaluate_with
from guiagent.errors import ActionError, ConfigError, DeviceError, DeviceLost, DeviceNotReady, DeviceTimeout
from guiagent.images import encode_png
from guiagent.net import free_port
from guiagent.types import Action, ActionType, Observation, Outcome, SystemButton, Task

T = TypeVar("T")

# Android KeyEvent codes.
KEYCODES: dict[str, int] = {
    "home": 3, "back": 4, "up": 19, "down": 20, "left": 21, "right": 22, "volume_up": 24, "volume_down": 25,
    "power": 26, "tab": 61, "space": 62, "enter": 66, "backspace": 67, "delete": 67, "menu": 82, "search": 84,
    "escape": 111, "esc": 111, "forward_delete": 112, "move_home": 122, "move_end": 123, "app_switch": 187,
}
BUTTON_KEYCODES: dict[SystemButton, int] = {
    SystemButton.BACK: 4, SystemButton.HOME: 3, SystemButton.MENU: 82, SystemButton.ENTER: 66,
    SystemButton.APP_SWITCH: 187,
}
_CONTROL_KEYS = {"\n": 66, "\t": 61}
_FOCUS_RE = re.compile(r"mCurrentFocus=Window\{[^}]*?\s(?P<package>[^\s/]+)/(?P<activity>[^\s}]+)\}")
_SIZE_RE = re.compile(r"(?:Override|Physical) size: (\d+)x(\d+)")
_EMULATOR_SERIAL = re.compile(r"^emulator-(\d+)$")
_SHELL_STDOUT, _SHELL_STDERR, _SHELL_EXIT = 1, 2, 3


def encode_input_text(text: str) -> list[str]:
    """Arguments for successive ``input text`` calls that together type ``text`` exactly.

    Android's ``input text`` turns every ``%s`` into a space (there is no escape for a literal ``%s``), so
    spaces are sent as ``%s`` and the text is cut between each literal ``%`` and the ``s`` after it: no
    single call then contains a ``%s`` that Android would misread.

    Args:
        text: Printable ASCII (``0x20``-``0x7e``); other characters need an input method.

    Returns:
        The arguments (unquoted), one per ``input text`` call; empty for empty text.
    """
    if any(not (32 <= ord(ch) < 127) for ch in text):
        raise ValueError(f"input text can only type printable ASCII, got {text!r}")
    chunks, start = [], 0
    for i in range(len(text) - 1):
        if text[i] == "%" and text[i + 1] == "s":
            chunks.append(text[start:i + 1])
            start = i + 1
    chunks.append(text[start:])
    return [c.replace(" ", "%s") for c in chunks if c]


@dataclass(frozen=True)
class ShellOutput:
    """Result of one shell command on the device."""

    stdout: bytes
    stderr: bytes
    status: int

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")


class AndroidEnv(Env):
    """An :class:`~guiagent.envs.base.Env` on one Android device over adb.

    Args:
        config: Device, adb server, timeouts, reset and input settings.
        task_setup: Called as ``task_setup(env, task)`` after the snapshot load and readiness check of
            :meth:`reset`, to put the device into the task's initial state (install data, open an app).
        task_evaluation: Called as ``task_evaluation(env, task)`` by :meth:`evaluate`: the benchmark's own
            checker (AndroidWorld's ``is_successful``, a MobileSim judge), returning an ``Outcome`` or a bool.
            ``env.answer`` holds the episode's last ANSWER.

    Attributes:
        counters: ``retries``, ``reconnects``, ``timeouts``, ``lost`` since construction.
    """

    def __init__(self, config: AndroidEnvConfig, task_setup: Callable[[AndroidEnv, Task], None] | None = None,
                 task_evaluation: TaskEvaluation | None = None):
        import adbutils  # deferred: only this backend needs it

        self.config = config
        self.env_id = config.serial
        self.counters = {"retries": 0, "reconnects": 0, "timeouts": 0, "lost": 0}
        self._task_setup = task_setup
        self._task_evaluation = task_evaluation
        self._instruction = ""
        self._ime_ready = False
        self._packages: list[str] | None = None
        self._grpc_channel = None
        self._closed = False
        self._is_tcp = ":" in config.serial
        if config.start_adb_server:
            started = self._adb("start-server", timeout=20)
            if started.returncode != 0:
                raise DeviceError(f"adb server on port {config.adb_server_port} did not start: {started.stderr.strip()}")
        self._client = adbutils.AdbClient(host="127.0.0.1", port=config.adb_server_port, socket_timeout=config.timeout)
        self._device = self._client.device(config.serial)
        if self._is_tcp and config.connect_tcp:
            self._connect()
        self._size = self._read_size()

    # --- plumbing -----------------------------------------------------------------------------------------
    def _adb(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        cmd = [self.config.adb_path, "-P", str(self.config.adb_server_port), *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            self.counters["timeouts"] += 1
            raise DeviceTimeout(f"{self.env_id}: '{' '.join(cmd)}' did not finish within {timeout}s") from exc
        except OSError as exc:
            raise ConfigError(f"cannot run adb at {self.config.adb_path!r}: {exc}") from exc

    def _connect(self, timeout: float | None = None) -> None:
        """``adb connect`` the TCP serial and wait until the server reports it as ``device``."""
        from adbutils import AdbError

        limit = timeout or self.config.timeout
        deadline = time.monotonic() + limit
        try:
            reply = self._client.connect(self.config.serial, timeout=limit)
        except AdbError as exc:
            raise self._lost(f"adb connect {self.config.serial} failed", exc) from exc
        if "connected" not in reply or "unable" in reply or "failed" in reply:
            raise self._lost(f"adb connect {self.config.serial}: {reply}", None)
        state = ""
        while time.monotonic() < deadline:
            # host:devices over a connection bounded by the client's socket timeout (get_state() would use
            # adbutils' 600 s default).
            try:
                state = next((d.state for d in self._client.list() if d.serial == self.config.serial), "absent")
            except AdbError as exc:
                state = str(exc)
            if state == "device":
                return
            time.sleep(0.05)
        raise self._lost(f"{self.env_id} stayed '{state}' after adb connect", None)

    def _reconnect(self, deadline: float) -> None:
        """Re-attach a TCP device after it went away, giving up at ``deadline`` (monotonic seconds)."""
        host, _, port = self.config.serial.rpartition(":")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._lost("no time left to reconnect", None)
        # Probe the port first: a dead device refuses at once, whereas the adb server may keep a stale,
        # auto-reconnecting transport for it and hold 'adb connect' for many seconds.
        try:
            socket.create_connection((host, int(port)), timeout=min(remaining, 1.0)).close()
        except OSError as exc:
            raise self._lost(f"{self.config.serial} does not accept connections", exc) from exc
        self._client.disconnect(self.config.serial)
        self._connect(timeout=max(deadline - time.monotonic(), 0.1))

    def _lost(self, message: str, exc: BaseException | None) -> DeviceLost:
        self.counters["lost"] += 1
        return DeviceLost(f"{self.env_id}: {message}" + (f": {exc}" if exc is not None else ""))

    def _raw_shell(self, command: str, timeout: float) -> ShellOutput:
        """One ``shell,v2,raw:`` exchange with the device; maps every failure onto the DeviceError tree."""
        from adbutils import AdbError, AdbTimeout

        try:
            conn = self._device.open_transport(timeout=timeout)
        except AdbTimeout as exc:
            self.counters["timeouts"] += 1
            raise DeviceTimeout(f"{self.env_id}: adb server did not answer within {timeout}s") from exc
        except AdbError as exc:  # "device 'X' not found", "device offline", server gone
            raise self._lost("transport unavailable", exc) from exc
        try:
            conn.conn.settimeout(timeout)
            conn.send_command("shell,v2,raw:" + command)
            conn.check_okay()
            out, err = bytearray(), bytearray()
            while True:
                kind, length = struct.unpack("<BI", conn.read_exact(5))
                data = conn.read_exact(length) if length else b""
                if kind == _SHELL_STDOUT:
                    out += data
                elif kind == _SHELL_STDERR:
                    err += data
                elif kind == _SHELL_EXIT:
                    return ShellOutput(bytes(out), bytes(err), data[0] if data else 255)
        except (AdbTimeout, socket.timeout, TimeoutError) as exc:
            self.counters["timeouts"] += 1
            raise DeviceTimeout(f"{self.env_id}: '{command[:60]}' did not answer within {timeout}s") from exc
        except (AdbError, EOFError, OSError) as exc:
            raise self._lost(f"connection closed during '{command[:60]}'", exc) from exc
        finally:
            conn.close()

    def _with_recovery(self, what: str, call: Callable[[], T], idempotent: bool) -> T:
        """Run ``call``; after DeviceLost reconnect (bounded, within ``config.timeout``) and retry idempotent calls."""
        retries = reconnects = 0
        deadline = time.monotonic() + self.config.timeout
        while True:
            try:
                return call()
            except DeviceTimeout:
                if not idempotent or retries >= self.config.max_retries:
                    raise
                retries += 1
                self.counters["retries"] += 1
            except DeviceLost as lost:
                if not (self._is_tcp and self.config.connect_tcp) or reconnects >= self.config.max_reconnects:
                    raise
                reconnects += 1
                self.counters["reconnects"] += 1
                try:
                    self._reconnect(deadline)
                except DeviceError as exc:
                    raise DeviceLost(f"{self.env_id}: {what[:60]}: device gone and reconnect failed: {exc}") from lost
                if not idempotent:
                    raise
                self.counters["retries"] += 1

    def shell(self, command: str, timeout: float | None = None, idempotent: bool = True) -> ShellOutput:
        """Run ``command`` in the device's shell and return its output and exit status.

        Args:
            command: A shell command line (quote arguments with ``shlex.quote``).
            timeout: Seconds; defaults to ``config.timeout``.
            idempotent: Whether it is safe to run again after a reconnect (False for actions).
        """
        if self._closed:
            raise DeviceLost(f"{self.env_id}: env is closed")
        limit = timeout or self.config.timeout
        return self._with_recovery(command, lambda: self._raw_shell(command, limit), idempotent)

    def _act(self, command: str) -> None:
        result = self.shell(command, idempotent=False)
        if result.status != 0:
            detail = (result.stderr or result.stdout).decode("utf-8", errors="replace").strip()
            raise ActionError(f"{self.env_id}: '{command[:80]}' failed with status {result.status}: {detail}")

    # --- device state ---------------------------------------------------------------------------------------
    def _read_size(self) -> tuple[int, int]:
        out = self.shell("wm size").text
        sizes = _SIZE_RE.findall(out)
        if not sizes:
            raise DeviceNotReady(f"{self.env_id}: cannot read the screen size from 'wm size': {out!r}")
        # An override size (set by `wm size WxH`) is listed after the physical one and is what apps render.
        width, height = sizes[-1]
        return int(width), int(height)

    @property
    def screen_size(self) -> tuple[int, int]:
        return self._size

    def getprop(self, key: str) -> str:
        return self.shell(f"getprop {shlex.quote(key)}").text.strip()

    def current_focus(self) -> tuple[str, str] | None:
        """``(package, activity)`` of the focused window, or None when nothing has focus."""
        match = _FOCUS_RE.search(self.shell("dumpsys window windows").text)
        return (match.group("package"), match.group("activity")) if match else None

    def packages(self) -> list[str]:
        if self._packages is None:
            out = self.shell("pm list packages").text
            self._packages = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("package:")]
        return self._packages

    # --- screenshots ----------------------------------------------------------------------------------------
    def capture(self) -> bytes:
        """Encoded PNG of the screen, from the gRPC endpoint when configured, else ``screencap -p``."""
        if self.config.grpc_endpoint:
            return self._with_recovery("getScreenshot", self._grpc_screenshot, idempotent=True)
        result = self.shell("screencap -p")
        if result.status != 0 or not result.stdout.startswith(b"\x89PNG"):
            raise DeviceNotReady(
                f"{self.env_id}: screencap failed (status {result.status}): "
                f"{result.stderr.decode('utf-8', errors='replace').strip() or result.stdout[:40]!r}")
        return result.stdout

    def _grpc(self):
        import grpc

        if self._grpc_channel is None:
            # An RGB888 screenshot at 1080x2400 is 7.8 MB, over gRPC's 4 MB default message limit.
            self._grpc_channel = grpc.insecure_channel(
                self.config.grpc_endpoint, options=[("grpc.max_receive_message_length", 64 << 20)])
        return self._grpc_channel

    def _grpc_call(self, what: str, call: Callable[[], T]) -> T:
        import grpc

        try:
            return call()
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                self.counters["timeouts"] += 1
                raise DeviceTimeout(f"{self.env_id}: gRPC {what} did not answer within {self.config.timeout}s") from exc
            raise self._lost(f"gRPC {what} failed ({code})", exc) from exc

    def _grpc_screenshot(self) -> bytes:
        from android_env.proto import emulator_controller_pb2 as ec
        from android_env.proto import emulator_controller_pb2_grpc as ec_grpc

        fmt = ec.ImageFormat.PNG if self.config.grpc_image_format == "png" else ec.ImageFormat.RGB888
        stub = ec_grpc.EmulatorControllerStub(self._grpc())
        image = self._grpc_call("getScreenshot", lambda: stub.getScreenshot(
            ec.ImageFormat(format=fmt), timeout=self.config.timeout))
        if fmt == ec.ImageFormat.PNG:
            return image.image
        from PIL import Image

        width, height = image.format.width, image.format.height
        if len(image.image) != width * height * 3:
            raise DeviceNotReady(f"{self.env_id}: gRPC screenshot has {len(image.image)} bytes for {width}x{height}")
        return encode_png(Image.frombytes("RGB", (width, height), image.image))

    def ui_dump(self) -> str:
        """The uiautomator XML hierarchy of the current screen."""
        path = "/sdcard/window_dump.xml"
        result = self.shell(f"uiautomator dump {path} >/dev/null && cat {path}", timeout=max(self.config.timeout, 10))
        xml = result.text
        if result.status != 0 or "<hierarchy" not in xml:
            raise DeviceNotReady(f"{self.env_id}: uiautomator dump failed: {result.stderr.decode(errors='replace')[:200]}")
        return xml

    # --- Env interface --------------------------------------------------------------------------------------
    def observe(self) -> Observation:
        png = self.capture()
        img = decode_screenshot(self.env_id, png)
        return Observation(
            width=img.width, height=img.height, screenshot=png,
            a11y_tree=self.ui_dump() if self.config.observe_a11y else None,
            instruction=self._instruction,
        )

    def reset(self, task: Task | None = None) -> Observation:
        self._instruction = task.instruction if task is not None else ""
        self.answer = None
        snapshot = task.snapshot if task is not None and task.snapshot else self.config.snapshot_name
        if snapshot and self.config.reset_method != "none":
            self.load_snapshot(snapshot)
        self.wait_ready()
        if task is not None and self._task_setup is not None:
            self._task_setup(self, task)
        return self.observe()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait for ``sys.boot_completed=1``, the launcher focused (pressing HOME once) and a non-blank screen.

        Raises:
            DeviceNotReady: Not ready within ``timeout`` (default ``config.ready_timeout``); says which check failed.
        """
        deadline = time.monotonic() + (timeout or self.config.ready_timeout)
        pressed_home = False
        while True:
            try:
                boot = self.getprop("sys.boot_completed")
                if boot != "1":
                    problem = f"sys.boot_completed is {boot!r}"
                else:
                    focus = self.current_focus()
                    if focus is None or focus[0] != self.config.launcher_package:
                        problem = f"focus is {focus}, not the launcher {self.config.launcher_package}"
                        if not pressed_home:
                            self._act("input keyevent 3")
                            pressed_home = True
                    else:
                        decode_screenshot(self.env_id, self.capture())
                        return
            except (DeviceNotReady, DeviceTimeout, DeviceLost) as exc:
                problem = str(exc)
            if time.monotonic() >= deadline:
                raise DeviceNotReady(f"{self.env_id}: not ready: {problem}")
            time.sleep(0.2)

    def load_snapshot(self, name: str) -> None:
        """Restore emulator snapshot ``name`` by ``adb emu avd snapshot load`` or the gRPC SnapshotService."""
        self._ime_ready = False
        if self.config.reset_method == "grpc":
            if not self.config.grpc_endpoint:
                raise ConfigError("reset_method 'grpc' needs grpc_endpoint")
            from android_env.proto import snapshot_service_pb2 as ss
            from android_env.proto import snapshot_service_pb2_grpc as ss_grpc

            stub = ss_grpc.SnapshotServiceStub(self._grpc())
            reply = self._grpc_call("LoadSnapshot", lambda: stub.LoadSnapshot(
                ss.SnapshotPackage(snapshot_id=name), timeout=self.config.snapshot_timeout))
            if not reply.success:
                raise DeviceError(f"{self.env_id}: LoadSnapshot {name!r} failed: {reply.err.decode(errors='replace')}")
            return
        load_snapshot_adb_emu(self.config, self.config.serial, name)

    def evaluate(self, task: Task) -> Outcome:
        return evaluate_with(self, task, self._task_evaluation)

    def execute(self, action: Action) -> None:
        kind = action.type
        if kind is ActionType.ANSWER:
            self.answer = action.text
            return
        if kind is ActionType.TERMINATE:
            return
        self.check_on_screen(action)
        if kind is ActionType.WAIT:
            time.sleep(action.duration if action.duration is not None else 1.0)
            return
        self._act(self._command_for(action))
        if self.config.settle_s:
            time.sleep(self.config.settle_s)

    def _command_for(self, action: Action) -> str:
        """The shell command line that performs ``action`` (everything but WAIT/ANSWER/TERMINATE)."""
        kind = action.type
        if kind in (ActionType.CLICK, ActionType.DOUBLE_CLICK, ActionType.TRIPLE_CLICK):
            x, y = _px(action.point)
            times = {ActionType.CLICK: 1, ActionType.DOUBLE_CLICK: 2, ActionType.TRIPLE_CLICK: 3}[kind]
            return " && ".join([f"input tap {x} {y}"] * times)
        if kind is ActionType.LONG_PRESS:
            x, y = _px(action.point)
            ms = int(action.duration * 1000) if action.duration else self.config.long_press_ms
            return f"input swipe {x} {y} {x} {y} {ms}"
        if kind in (ActionType.SWIPE, ActionType.DRAG):
            (x1, y1), (x2, y2) = _px(action.point), _px(action.end)
            ms = int(action.duration * 1000) if action.duration else self.config.swipe_ms
            verb = "swipe" if kind is ActionType.SWIPE else "draganddrop"
            return f"input {verb} {x1} {y1} {x2} {y2} {ms}"
        if kind is ActionType.SCROLL:
            (x1, y1), (x2, y2) = scroll_stroke(action.direction, self._size, action.point, action.amount)
            return f"input swipe {x1} {y1} {x2} {y2} {self.config.swipe_ms}"
        if kind is ActionType.TYPE:
            return self._type_command(action.text or "")
        if kind in (ActionType.KEY, ActionType.SYSTEM_BUTTON):
            return f"input keyevent {keycode_for(action)}"
        if kind is ActionType.OPEN_APP:
            target = resolve_app(action.text or "", self.config.app_packages, self.packages)
            if "/" in target:
                return f"am start -n {shlex.quote(target)}"
            return f"monkey -p {shlex.quote(target)} -c android.intent.category.LAUNCHER 1"
        raise ActionError(f"{kind.value} has no touch-screen equivalent on Android")

    def _type_command(self, text: str) -> str:
        if not text:
            raise ActionError("type needs non-empty text")
        if all(32 <= ord(ch) < 127 or ch in _CONTROL_KEYS for ch in text):
            commands = []
            for part in re.split(r"([\n\t])", text):
                if part in _CONTROL_KEYS:
                    commands.append(f"input keyevent {_CONTROL_KEYS[part]}")
                else:
                    commands.extend(f"input text {shlex.quote(chunk)}" for chunk in encode_input_text(part))
            return " && ".join(commands)
        ime = self.config.input_method
        if not self._ime_ready:
            installed = self.shell("ime list -s").text.split()
            if ime not in installed:
                raise ActionError(
                    f"{self.env_id}: cannot type non-ASCII text {text!r}: input method {ime} is not installed "
                    "(install ADBKeyboard or type ASCII only)")
            self._act(f"ime enable {ime} && ime set {ime}")
            self._ime_ready = True
        msg = base64.b64encode(text.encode("utf-8")).decode("ascii")
        return f"am broadcast -a ADB_INPUT_B64 --es msg {msg}"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._grpc_channel is not None:
            self._grpc_channel.close()
        if self.config.kill_adb_server_on_close:
            try:
                self._adb("kill-server", timeout=10)
            except DeviceError:
                pass


def decode_screenshot(env_id: str, png: bytes):
    """Decode a captured screen; raise DeviceNotReady for an undecodable or single-colour (blank) capture.

    Returns:
        The ``PIL.Image`` (never a stand-in: a failed capture is an error, not a black image).
    """
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(png))
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DeviceNotReady(f"{env_id}: screenshot is not a decodable image ({len(png)} bytes)") from exc
    extrema = img.getextrema()
    bands = extrema if isinstance(extrema[0], tuple) else (extrema,)
    if all(low == high for low, high in bands):
        raise DeviceNotReady(f"{env_id}: screenshot is blank (one colour {bands[0][0]})")
    return img


def keycode_for(action: Action) -> int:
    """Android key code of a KEY or SYSTEM_BUTTON action (ActionError for keys Android has no code for)."""
    if action.type is ActionType.SYSTEM_BUTTON:
        return BUTTON_KEYCODES[action.button]
    name = action.keys[0].lower()
    if name not in KEYCODES:
        raise ActionError(f"no Android key code for key {name!r}; known: {', '.join(sorted(KEYCODES))}")
    return KEYCODES[name]


def resolve_app(name: str, app_packages: dict[str, str], installed: Callable[[], list[str]]) -> str:
    """Package (or ``package/activity``) for an app name: the configured map, an exact package, or the last
    package segment ("Settings" -> com.android.settings, "Clock" -> com.android.deskclock).

    Args:
        name: What the OPEN_APP action says.
        app_packages: Configured name -> target map (case-insensitive names).
        installed: Returns the installed packages; only called when the map has no entry.
    """
    wanted = name.strip().lower()
    for key, target in app_packages.items():
        if key.lower() == wanted:
            return target
    packages = installed()
    if name in packages:
        return name
    squashed = wanted.replace(" ", "")
    for match in (lambda last: last == squashed, lambda last: squashed in last):
        found = [p for p in packages if match(p.rsplit(".", 1)[-1].lower())]
        if len(found) == 1:
            return found[0]
    raise ActionError(f"no app named {name!r} (configure app_packages; {len(packages)} packages installed)")


@contextlib.contextmanager
def private_adb_server(adb_path: str = "adb", timeout: float = 30.0) -> Iterator[int]:
    """An adb server of its own on a free 127.0.0.1 port, for tests, benchmarks and demos.

    A private server keeps concurrent users from sharing (and losing) one. It is killed on exit, also
    when the body or the server's own start-up fails.

    Yields:
        The server's port (``adb -P PORT``, ``AndroidEnvConfig.adb_server_port``).
    """
    port = free_port()
    try:
        subprocess.run([adb_path, "-P", str(port), "start-server"], check=True, capture_output=True, timeout=timeout)
        yield port
    finally:
        subprocess.run([adb_path, "-P", str(port), "kill-server"], check=False, capture_output=True, timeout=timeout)


def wait_for_device(serial: str, adb_server_port: int, adb_path: str = "adb", timeout: float = 10.0) -> None:
    """Wait until the adb server on ``adb_server_port`` lists ``serial`` as an online ``device``.

    Raises:
        DeviceNotReady: it is not listed within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        listing = subprocess.run([adb_path, "-P", str(adb_server_port), "devices"], capture_output=True, text=True,
                                 timeout=timeout, check=False).stdout
        if f"{serial}\tdevice" in listing:
            return
        if time.monotonic() > deadline:
            raise DeviceNotReady(f"{serial} is not listed by the adb server on port {adb_server_port}")
        time.sleep(0.1)


def load_snapshot_adb_emu(config: AndroidInputConfig, serial: str, name: str) -> None:
    """``adb emu avd snapshot load NAME``: the emulator console restores the snapshot (seconds, not a cold boot).

    Raises:
        ConfigError: ``serial`` is not an emulator's (``emulator-PORT``), or adb cannot be run.
        DeviceTimeout: The load took longer than ``config.snapshot_timeout``.
        DeviceError: The console refused (unknown snapshot, ``KO: ...``).
    """
    if not _EMULATOR_SERIAL.match(serial):
        raise ConfigError(f"'adb emu' needs an emulator serial (emulator-PORT), got {serial!r}")
    cmd = [config.adb_path, "-P", str(config.adb_server_port), "-s", serial, "emu", "avd", "snapshot", "load", name]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=config.snapshot_timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DeviceTimeout(f"{serial}: snapshot load {name!r} took over {config.snapshot_timeout}s") from exc
    except OSError as exc:
        raise ConfigError(f"cannot run adb at {config.adb_path!r}: {exc}") from exc
    output = (done.stdout + done.stderr).strip()
    # adb exits 0 even when the console answers "KO: ...", so the text decides.
    if done.returncode != 0 or "KO" in output or "error" in output.lower():
        raise DeviceError(f"{serial}: adb emu avd snapshot load {name}: {output or done.returncode}")


def _px(point: tuple[float, float] | None) -> tuple[int, int]:
    assert point is not None
    return int(round(point[0])), int(round(point[1]))


def build_farm_env(device_id: str, options: dict, restart: int = 0) -> AndroidEnv:
    """A farm ``android`` worker's device: the :class:`AndroidEnvConfig` YAML file in ``device_config``.

    With ``--env-options '{"androidworld": true}'`` (and optionally ``"androidworld_family"``,
    ``"androidworld_python"``) its tasks are AndroidWorld's, set up and judged by android_world's own code on
    this emulator (:func:`guiagent.envs.androidworld.worker_tasks`).
    """
    from guiagent.config import load_config

    if not options.get("device_config"):
        raise ConfigError("an android worker needs --device-config (an AndroidEnvConfig YAML file)")
    config = load_config(options["device_config"], AndroidEnvConfig)
    if not options.get("androidworld"):
        return AndroidEnv(config)
    from guiagent.envs import androidworld

    tasks = androidworld.worker_tasks(config.serial, config.adb_path, config.grpc_endpoint,
                                      options.get("androidworld_family", androidworld.FAMILY),
                                      options.get("androidworld_python"))
    return AndroidEnv(config, task_setup=tasks.setup, task_evaluation=tasks.evaluate)
