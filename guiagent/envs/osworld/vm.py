"""The two wires to an OSWorld VM: its HTTP server and its QEMU monitor.

:class:`VMClient` speaks the HTTP API of the server that runs inside every OSWorld VM
(``desktop_env/server/main.py``, port 5000): ``GET /screenshot`` (PNG), ``GET /accessibility``
(``{"AT": xml}``), ``POST /screen_size``, ``POST /execute`` (``{"command", "shell"}`` →
``{"status", "output", "error", "returncode"}``), ``POST /file`` (form ``file_path``) and the ``/setup/*``
endpoints the task configs use (``launch``, ``execute``, ``open_file``, ``upload``, ``activate_window``,
``close_window``, ``change_wallpaper``). Every call has a timeout; reads are retried a bounded number of
times; failures are typed (:class:`DeviceTimeout`, :class:`DeviceLost`, :class:`DeviceError`).

:class:`QemuMonitor` speaks QEMU's human monitor protocol (HMP, the ``-monitor telnet:...`` text console of
the VM's QEMU): ``stop``/``cont`` freeze and resume the guest (its clock too, so the desktop's idle lock does
not fire while the model thinks), ``savevm``/``loadvm`` save and restore a snapshot in the VM's qcow2
overlay (a reset in seconds instead of a reboot).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from guiagent.errors import ActionError, DeviceError, DeviceLost, DeviceTimeout

T = TypeVar("T")

# What OSWorld's PythonController puts before every pyautogui command it sends to /execute.
PYAUTOGUI_PREFIX = "import pyautogui; import time; pyautogui.FAILSAFE = False; "


class VMClient:
    """A client of one OSWorld VM's HTTP server.

    Args:
        base_url: ``http://HOST:PORT`` of the VM's server.
        timeout: Seconds each request may take.
        retries: Extra attempts of an idempotent request (reads) after a timeout or a dropped connection.
        retry_interval: Seconds between attempts.
        name: How errors name the VM (the device id).

    Attributes:
        counters: ``retries``, ``timeouts``, ``lost`` since construction.
    """

    def __init__(self, base_url: str, timeout: float = 30.0, retries: int = 2, retry_interval: float = 1.0,
                 name: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.retry_interval = retry_interval
        self.name = name or self.base_url
        self.counters = {"retries": 0, "timeouts": 0, "lost": 0}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, idempotent: bool = True, timeout: float | None = None,
                ok_statuses: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        """One HTTP request to the VM, retried when idempotent.

        Raises:
            DeviceTimeout: no answer within the timeout (after the retries).
            DeviceLost: the connection was refused or dropped (after the retries).
            DeviceError: the server answered with a status outside ``ok_statuses``.
        """
        attempts = 1 + (self.retries if idempotent else 0)
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                self.counters["retries"] += 1
                time.sleep(self.retry_interval)
            try:
                response = self._http.request(method, path, timeout=timeout or self.timeout, **kwargs)
            except httpx.TimeoutException as exc:
                self.counters["timeouts"] += 1
                last = DeviceTimeout(f"{self.name}: {method} {path} got no answer within {timeout or self.timeout}s")
                last.__cause__ = exc
                continue
            except httpx.TransportError as exc:
                self.counters["lost"] += 1
                last = DeviceLost(f"{self.name}: {method} {path}: {type(exc).__name__}: {exc}")
                last.__cause__ = exc
                continue
            if response.status_code not in ok_statuses:
                raise DeviceError(f"{self.name}: {method} {path} answered {response.status_code}: "
                                  f"{response.text[:300]}")
            return response
        raise last

    # --- observation -----------------------------------------------------------------------------------
    def screenshot(self) -> bytes:
        """The screen as PNG bytes (with the cursor, as OSWorld's server captures it)."""
        return self.request("GET", "/screenshot").content

    def accessibility_tree(self) -> str:
        """The accessibility tree as OSWorld's XML (AT-SPI on Ubuntu)."""
        reply = self.request("GET", "/accessibility").json()
        if not isinstance(reply, dict) or not isinstance(reply.get("AT"), str):
            raise DeviceError(f"{self.name}: /accessibility answered without an 'AT' string")
        return reply["AT"]

    def screen_size(self) -> tuple[int, int]:
        reply = self.request("POST", "/screen_size").json()
        return int(reply["width"]), int(reply["height"])

    def get_file(self, path: str) -> bytes | None:
        """The bytes of ``path`` on the VM, or None when it does not exist there."""
        response = self.request("POST", "/file", data={"file_path": path}, ok_statuses=(200, 404))
        return response.content if response.status_code == 200 else None

    # --- commands ----------------------------------------------------------------------------------------
    def run_command(self, command: list[str] | str, shell: bool = False, *, setup: bool = False,
                    timeout: float | None = None) -> dict[str, Any]:
        """Run ``command`` inside the VM (``/execute``, or ``/setup/execute`` for a task's setup step).

        Never retried: a command is not idempotent in general.

        Returns:
            The server's reply: ``{"status", "output", "error", "returncode"}``.

        Raises:
            DeviceError: the server could not run it (HTTP 500, e.g. the program does not exist).
        """
        path = "/setup/execute" if setup else "/execute"
        return self.request("POST", path, json={"command": command, "shell": shell}, idempotent=False,
                            timeout=timeout).json()

    def run_pyautogui(self, code: str, timeout: float | None = None) -> dict[str, Any]:
        """Run checked pyautogui ``code`` in the VM's Python, the way OSWorld's PythonController does.

        Raises:
            ActionError: the code failed inside the VM (non-zero exit code: pyautogui refused an argument, a
                key name it does not know): the action's fault, not the device's, so the episode goes on.
            DeviceError: the VM could not run Python at all.
        """
        reply = self.run_command(["python", "-c", PYAUTOGUI_PREFIX + code], timeout=timeout)
        if reply.get("returncode", 0) != 0:
            raise ActionError(f"{self.name}: pyautogui code failed in the VM: {str(reply.get('error'))[-300:]}")
        return reply

    def setup(self, endpoint: str, payload: dict[str, Any]) -> str:
        """POST a JSON ``payload`` to ``/setup/<endpoint>`` (``launch``, ``open_file``, ``activate_window``,
        ``close_window``, ``change_wallpaper``); returns the server's text.

        Raises:
            DeviceError: the server refused (a missing file, an unknown window) or failed.
        """
        return self.request("POST", f"/setup/{endpoint}", json=payload, idempotent=False).text

    def upload(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` on the VM (``/setup/upload``, a multipart form)."""
        self.request("POST", "/setup/upload", idempotent=False, data={"file_path": path},
                     files={"file_data": (path.rsplit("/", 1)[-1] or "file", data)})


# --- QEMU's monitor ---------------------------------------------------------------------------------------

_PROMPT = b"(qemu) "
_TELNET_IAC = re.compile(rb"\xff[\xfb-\xfe].|\xff[\xf0-\xfa]", re.DOTALL)  # option negotiation a telnet chardev sends


class QemuMonitor:
    """QEMU's human monitor (HMP) over TCP, one connection per command.

    Args:
        address: ``HOST:PORT`` of the monitor (QEMU's ``-monitor telnet:HOST:PORT,server,nowait``).
        timeout: Seconds a command may take (``loadvm`` of a large VM takes seconds).
        name: How errors name the VM.
    """

    def __init__(self, address: str, timeout: float = 60.0, name: str | None = None):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"monitor address must be HOST:PORT, got {address!r}")
        self.host, self.port, self.timeout = host, int(port), timeout
        self.name = name or address

    def command(self, line: str) -> str:
        """Send one HMP command; returns what the monitor printed before its next prompt.

        Raises:
            DeviceLost: the monitor cannot be reached (QEMU is gone).
            DeviceTimeout: no prompt came back within the timeout.
        """
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
                sock.settimeout(self.timeout)
                self._read_prompt(sock)
                sock.sendall(line.encode() + b"\n")
                text = self._read_prompt(sock).decode(errors="replace").replace("\r", "")
        except TimeoutError as exc:
            raise DeviceTimeout(f"{self.name}: the QEMU monitor did not answer {line!r} in {self.timeout}s") from exc
        except OSError as exc:
            raise DeviceLost(f"{self.name}: QEMU monitor at {self.host}:{self.port}: {exc}") from exc
        # The monitor echoes the command line first.
        lines = text.split("\n")
        if lines and lines[0].strip() == line.strip():
            lines = lines[1:]
        return "\n".join(lines).strip()

    @staticmethod
    def _read_prompt(sock: socket.socket) -> bytes:
        data = b""
        while not data.endswith(_PROMPT):
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionResetError("the monitor closed the connection")
            data = _TELNET_IAC.sub(b"", data + chunk)
        return data[: -len(_PROMPT)]

    def _checked(self, line: str) -> str:
        output = self.command(line)
        if re.search(r"\b(error|does not exist|not found|could not)\b", output, re.IGNORECASE):
            raise DeviceError(f"{self.name}: monitor {line!r}: {output}")
        return output

    def pause(self) -> None:
        """Freeze the guest (``stop``)."""
        self._checked("stop")

    def resume(self) -> None:
        """Let the guest run again (``cont``)."""
        self._checked("cont")

    def running(self) -> bool:
        return "running" in self.command("info status")

    def snapshots(self) -> list[str]:
        """Names of the snapshots in the VM's disk (``info snapshots``)."""
        names = []
        for row in self.command("info snapshots").splitlines():
            parts = row.split()
            # Rows are "ID TAG VM-SIZE DATE VM-CLOCK [ICOUNT]", the ID "--" for a snapshot on every disk;
            # the header ("ID TAG ...") and "List of snapshots ..." lines are not rows.
            if len(parts) >= 2 and (parts[0].isdigit() or parts[0] == "--"):
                names.append(parts[1])
        return names

    def save(self, name: str) -> None:
        self._checked(f"savevm {name}")

    def load(self, name: str) -> None:
        self._checked(f"loadvm {name}")


def with_deadline(what: str, timeout: float, attempt: Callable[[], T], interval: float = 0.5) -> T:
    """Call ``attempt`` until it returns without a :class:`DeviceError`, for at most ``timeout`` seconds.

    Raises:
        DeviceError: the last attempt's error, once the time is up (re-raised with ``what`` in front).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return attempt()
        except DeviceError as exc:
            if time.monotonic() >= deadline:
                raise type(exc)(f"{what}: not within {timeout}s: {exc}") from exc
        time.sleep(interval)
