"""A test VM: a small scripted desktop behind OSWorld's VM server API and a QEMU-style monitor.

It is a real HTTP server process (FastAPI on uvicorn) with the endpoints, payloads and replies of the
server inside an OSWorld VM (``desktop_env/server/main.py``), over a desktop that has its own rendering
(Pillow) and its own checkable state, so an OSWorld task can be set up, played and judged end to end on a
machine without KVM:

- a **Text Editor** (``gedit [PATH]``, or ``/setup/open_file``): a text area, a Save button; typing goes into
  the focused text area, Ctrl+S or Save writes the file into the desktop's file system;
- **Settings** (``desk-settings``): a "Dark mode" checkbox, persisted at once to
  ``/home/user/.config/desk/settings.json``;
- a **screen lock** after ``--lock-after`` seconds without input while the guest runs (paused time does
  not count, as a frozen guest's clock does not move); an Unlock button lifts it.

Code sent to ``/execute`` is never executed: ``python -c CODE`` is read by the same allow-list the client
uses (:func:`~guiagent.envs.osworld.code.check_pyautogui`) and the pyautogui calls it names are applied to
the desktop; ``cat PATH`` prints a file; any other program does not exist here.

The monitor (``--monitor-port``) answers QEMU's HMP commands ``stop``, ``cont``, ``info status``,
``savevm``, ``loadvm``, ``info snapshots`` and ``quit``. While stopped, HTTP requests wait, as a frozen
guest's server would. ``--die-after-executes N`` kills the process during the N-th ``/execute``: a VM that
dies mid-episode.

Run: ``python -m guiagent.envs.osworld.testvm --port 5000 --monitor-port 7100``.
"""

import argparse
import asyncio
import contextlib
import copy
import io
import json
import os
import shlex
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from guiagent.envs.osworld.code import check_pyautogui
from guiagent.errors import ActionError
from guiagent.types import Action, ActionType

# OSWorld's accessibility-tree namespaces (Ubuntu).
NS = {
    "st": "https://accessibility.ubuntu.example.org/ns/state",
    "attr": "https://accessibility.ubuntu.example.org/ns/attributes",
    "cp": "https://accessibility.ubuntu.example.org/ns/component",
}
SETTINGS_FILE = "/home/user/.config/desk/settings.json"
TITLE_H = 28
Box = tuple[int, int, int, int]


def _inside(point: tuple[float, float], box: Box) -> bool:
    return box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]


@dataclass
class Window:
    """One window: a Text Editor (``gedit``) or Settings (``desk-settings``)."""

    app: str
    x: int
    y: int
    w: int
    h: int
    path: str | None = None
    text: str = ""
    text_focused: bool = False
    all_selected: bool = False

    @property
    def title(self) -> str:
        if self.app == "gedit":
            return f"{(self.path or 'Untitled').rsplit('/', 1)[-1]} - Text Editor"
        return "Settings"

    def box(self) -> Box:
        return (self.x, self.y, self.x + self.w, self.y + self.h)

    def close_box(self) -> Box:
        return (self.x + self.w - TITLE_H, self.y, self.x + self.w, self.y + TITLE_H)

    def text_box(self) -> Box:
        return (self.x + 10, self.y + TITLE_H + 10, self.x + self.w - 10, self.y + self.h - 52)

    def save_box(self) -> Box:
        return (self.x + self.w - 110, self.y + self.h - 44, self.x + self.w - 10, self.y + self.h - 10)

    def checkbox_box(self) -> Box:
        return (self.x + 20, self.y + TITLE_H + 24, self.x + 44, self.y + TITLE_H + 48)


@dataclass
class DesktopState:
    """Everything a snapshot saves and restores."""

    files: dict[str, bytes] = field(default_factory=dict)
    windows: list[Window] = field(default_factory=list)  # the last one is in front (active)
    cursor: tuple[float, float] = (0.0, 0.0)
    locked: bool = False


class Desktop:
    """The scripted desktop: state, input, rendering, accessibility tree, and its guest clock.

    Args:
        width: Screen width in pixels.
        height: Screen height in pixels.
        lock_after: Seconds of guest time without input before the screen locks; None never locks.
    """

    def __init__(self, width: int = 1280, height: int = 800, lock_after: float | None = None):
        self.width, self.height, self.lock_after = width, height, lock_after
        self.state = DesktopState(cursor=(width / 2, height / 2))
        self.snapshots: dict[str, DesktopState] = {}
        self.paused_since: float | None = None
        self.paused_total = 0.0
        self.last_input = self.guest_time()

    # --- guest clock (frozen while paused) ---------------------------------------------------------------
    def guest_time(self) -> float:
        now = self.paused_since if self.paused_since is not None else time.monotonic()
        return now - self.paused_total

    def pause(self) -> None:
        if self.paused_since is None:
            self.paused_since = time.monotonic()

    def resume(self) -> None:
        if self.paused_since is not None:
            self.paused_total += time.monotonic() - self.paused_since
            self.paused_since = None

    def tick(self) -> None:
        """Lock the screen when the guest sat idle for ``lock_after`` seconds."""
        if self.lock_after is not None and self.guest_time() - self.last_input > self.lock_after:
            self.state.locked = True

    def unlock_box(self) -> Box:
        return (self.width // 2 - 80, self.height // 2 + 20, self.width // 2 + 80, self.height // 2 + 60)

    # --- apps ------------------------------------------------------------------------------------------------
    def front(self) -> Window | None:
        return self.state.windows[-1] if self.state.windows else None

    def _place(self, window: Window) -> None:
        offset = 30 * len(self.state.windows)
        window.x, window.y = 60 + offset, 40 + offset
        self.state.windows.append(window)

    def launch(self, argv: list[str]) -> None:
        """Start an app; ValueError for a program this desktop does not have."""
        if not argv:
            raise ValueError("empty command")
        if argv[0] == "gedit":
            if len(argv) > 1:
                self.open_file(argv[1])
            else:
                self._place(Window("gedit", 0, 0, 720, 480))
        elif argv[0] == "desk-settings":
            self._place(Window("desk-settings", 0, 0, 420, 220))
        else:
            raise ValueError(f"[Errno 2] No such file or directory: {argv[0]!r}")

    def open_file(self, path: str) -> None:
        """Open ``path`` in the Text Editor; FileNotFoundError when it does not exist."""
        if path not in self.state.files:
            raise FileNotFoundError(path)
        self._place(Window("gedit", 0, 0, 720, 480, path=path, text=self.state.files[path].decode("utf-8", "replace")))

    def find_window(self, name: str, strict: bool) -> Window | None:
        for window in reversed(self.state.windows):
            if (window.title == name) if strict else (name.lower() in window.title.lower()):
                return window
        return None

    def activate(self, window: Window) -> None:
        self.state.windows.remove(window)
        self.state.windows.append(window)

    def settings(self) -> dict[str, bool]:
        raw = self.state.files.get(SETTINGS_FILE)
        return json.loads(raw) if raw else {"dark_mode": False}

    # --- input -------------------------------------------------------------------------------------------------
    def apply(self, action: Action) -> None:
        """Apply one canonical action (what a pyautogui call did) to the desktop."""
        self.tick()
        self.last_input = self.guest_time()
        kind, point = action.type, action.point
        if point is not None:
            self.state.cursor = action.end or point
        if self.state.locked:
            if kind is ActionType.CLICK and _inside(point, self.unlock_box()):
                self.state.locked = False
            return
        if kind in (ActionType.CLICK, ActionType.DOUBLE_CLICK, ActionType.TRIPLE_CLICK):
            self._click(point, select_all=kind is not ActionType.CLICK)
        elif kind is ActionType.TYPE:
            self._type(action.text)
        elif kind in (ActionType.KEY, ActionType.HOTKEY):
            self._keys(action.keys)

    def _click(self, point: tuple[float, float], select_all: bool) -> None:
        hit = next((w for w in reversed(self.state.windows) if _inside(point, w.box())), None)
        for window in self.state.windows:
            window.text_focused = False
        if hit is None:
            return
        self.activate(hit)
        if _inside(point, hit.close_box()):
            self.state.windows.remove(hit)
        elif hit.app == "gedit" and _inside(point, hit.save_box()):
            self._save(hit)
        elif hit.app == "gedit" and _inside(point, hit.text_box()):
            hit.text_focused = True
            hit.all_selected = select_all
        elif hit.app == "desk-settings" and _inside(point, hit.checkbox_box()):
            settings = self.settings()
            settings["dark_mode"] = not settings.get("dark_mode", False)
            self.state.files[SETTINGS_FILE] = json.dumps(settings, sort_keys=True).encode()

    def _editing(self) -> Window | None:
        window = self.front()
        return window if window is not None and window.app == "gedit" and window.text_focused else None

    def _type(self, text: str) -> None:
        window = self._editing()
        if window is not None:
            window.text = text if window.all_selected else window.text + text
            window.all_selected = False

    def _keys(self, keys: tuple[str, ...]) -> None:
        window = self.front()
        chord = tuple(k.lower() for k in keys)
        if chord == ("ctrl", "s") and window is not None and window.app == "gedit":
            self._save(window)
        elif chord == ("ctrl", "a") and self._editing() is not None:
            window.all_selected = True
        elif chord in (("enter",), ("return",)):
            self._type("\n")
        elif chord == ("backspace",) and self._editing() is not None:
            window.text = "" if window.all_selected else window.text[:-1]
            window.all_selected = False

    def _save(self, window: Window) -> None:
        if window.path is None:  # no save dialog on this desktop: an untitled file goes to the home folder
            window.path = "/home/user/Untitled.txt"
        self.state.files[window.path] = window.text.encode("utf-8")

    # --- output ------------------------------------------------------------------------------------------------
    def render(self) -> bytes:
        """The screen as PNG bytes."""
        from PIL import Image, ImageDraw, ImageFont

        dark = self.settings().get("dark_mode", False)
        image = Image.new("RGB", (self.width, self.height), (40, 44, 52) if dark else (58, 110, 165))
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default(size=16)
        if self.state.locked:
            draw.rectangle((0, 0, self.width, self.height), fill=(15, 15, 20))
            draw.text((self.width // 2 - 70, self.height // 2 - 30), "Screen locked", fill="white", font=font)
            draw.rectangle(self.unlock_box(), fill=(90, 90, 110), outline="white")
            draw.text((self.unlock_box()[0] + 50, self.unlock_box()[1] + 10), "Unlock", fill="white", font=font)
        else:
            for window in self.state.windows:
                front = window is self.front()
                draw.rectangle(window.box(), fill=(236, 236, 236), outline=(30, 30, 30))
                draw.rectangle((window.x, window.y, window.x + window.w, window.y + TITLE_H),
                               fill=(70, 70, 160) if front else (130, 130, 130))
                draw.text((window.x + 8, window.y + 5), window.title, fill="white", font=font)
                draw.text((window.close_box()[0] + 9, window.y + 5), "x", fill="white", font=font)
                if window.app == "gedit":
                    draw.rectangle(window.text_box(), fill="white",
                                   outline=(40, 120, 220) if window.text_focused else (160, 160, 160))
                    draw.multiline_text((window.text_box()[0] + 6, window.text_box()[1] + 6), window.text,
                                        fill="black", font=font)
                    draw.rectangle(window.save_box(), fill=(210, 210, 225), outline=(60, 60, 60))
                    draw.text((window.save_box()[0] + 32, window.save_box()[1] + 8), "Save", fill="black", font=font)
                else:
                    box = window.checkbox_box()
                    draw.rectangle(box, fill="white", outline="black")
                    if self.settings().get("dark_mode", False):
                        draw.line((box[0] + 4, box[1] + 12, box[0] + 10, box[3] - 4, box[2] - 4, box[1] + 4),
                                  fill="black", width=3)
                    draw.text((box[2] + 10, box[1] + 3), "Dark mode", fill="black", font=font)
            x, y = self.state.cursor
            draw.polygon([(x, y), (x, y + 16), (x + 11, y + 11)], fill="white", outline="black")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    def accessibility_tree(self) -> str:
        """The screen as OSWorld's accessibility XML (AT-SPI roles, ``st:``/``cp:`` attributes)."""
        for prefix, uri in NS.items():
            ET.register_namespace(prefix, uri)
        root = ET.Element("desktop-frame")

        def node(parent: ET.Element, role: str, name: str, box: Box, **states: bool) -> ET.Element:
            element = ET.SubElement(parent, role, {
                "name": name, f"{{{NS['st']}}}showing": "true", f"{{{NS['st']}}}visible": "true",
                f"{{{NS['cp']}}}screencoord": f"({box[0]}, {box[1]})",
                f"{{{NS['cp']}}}size": f"({box[2] - box[0]}, {box[3] - box[1]})",
                **{f"{{{NS['st']}}}{k}": "true" for k, v in states.items() if v}})
            return element

        if self.state.locked:
            screen = node(root, "application", "gnome-shell", (0, 0, self.width, self.height))
            node(screen, "push-button", "Unlock", self.unlock_box())
        for window in self.state.windows if not self.state.locked else ():
            app = ET.SubElement(root, "application", {"name": window.app})
            frame = node(app, "frame", window.title, window.box(), active=window is self.front())
            node(frame, "push-button", "Close", window.close_box())
            if window.app == "gedit":
                text = node(frame, "text", "", window.text_box(), editable=True, focused=window.text_focused)
                text.text = window.text
                node(frame, "push-button", "Save", window.save_box())
            else:
                node(frame, "check-box", "Dark mode", window.checkbox_box(),
                     checked=self.settings().get("dark_mode", False))
        return ET.tostring(root, encoding="unicode")

    # --- snapshots -----------------------------------------------------------------------------------------------
    def save(self, name: str) -> None:
        self.snapshots[name] = copy.deepcopy(self.state)

    def load(self, name: str) -> None:
        self.state = copy.deepcopy(self.snapshots[name])
        self.last_input = self.guest_time()


# --- the server ----------------------------------------------------------------------------------------------


# No postponed annotations in this module: FastAPI resolves the handlers' parameter types (Request) at
# definition time, and they are imported inside make_app so that the desktop imports without FastAPI.
def make_app(desktop: Desktop, monitor_port: int | None = None, host: str = "127.0.0.1",
             die_after_executes: int | None = None):
    """The FastAPI app serving ``desktop`` (and its monitor on ``monitor_port``, started with the app)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse, Response

    running = asyncio.Event()
    running.set()
    executes = {"n": 0}

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        server = None
        if monitor_port is not None:
            server = await asyncio.start_server(
                lambda r, w: _monitor_session(desktop, running, r, w), host, monitor_port, reuse_address=True)
        try:
            yield
        finally:
            if server is not None:
                server.close()

    app = FastAPI(lifespan=lifespan)

    @app.middleware("http")
    async def frozen_while_paused(request: Request, call_next):
        await running.wait()  # a stopped guest's server answers nothing until it runs again
        desktop.tick()
        return await call_next(request)

    @app.get("/screenshot")
    async def screenshot():
        return Response(desktop.render(), media_type="image/png")

    @app.get("/accessibility")
    async def accessibility():
        return {"AT": desktop.accessibility_tree()}

    @app.post("/screen_size")
    async def screen_size():
        return {"width": desktop.width, "height": desktop.height}

    @app.get("/platform")
    async def platform():
        return PlainTextResponse("Linux")

    @app.get("/cursor_position")
    async def cursor_position():
        return [round(desktop.state.cursor[0]), round(desktop.state.cursor[1])]

    async def run(request: Request, setup: bool):
        body = await request.json()
        command, shell = body.get("command", []), bool(body.get("shell", False))
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if not setup:
            executes["n"] += 1
            if die_after_executes is not None and executes["n"] >= die_after_executes:
                os._exit(1)  # the VM dies mid-episode, in the middle of a request
        if argv[:1] in (["python"], ["python3"]) and len(argv) == 3 and argv[1] == "-c":
            try:
                actions = check_pyautogui(argv[2])
            except ActionError as exc:
                return _completed("", f"Traceback (most recent call last):\nPermissionError: {exc}\n", 1)
            for action in actions:
                desktop.apply(action)
            return _completed("", "", 0)
        if argv[:1] == ["cat"] and len(argv) == 2:
            data = desktop.state.files.get(argv[1])
            if data is None:
                return _completed("", f"cat: {argv[1]}: No such file or directory\n", 1)
            return _completed(data.decode("utf-8", "replace"), "", 0)
        program = argv[0] if argv else ""
        return JSONResponse({"status": "error", "message": f"[Errno 2] No such file or directory: {program!r}"
                                                           + (" (no shell on the test VM)" if shell else "")},
                            status_code=500)

    @app.post("/execute")
    async def execute(request: Request):
        return await run(request, setup=False)

    @app.post("/setup/execute")
    async def setup_execute(request: Request):
        return await run(request, setup=True)

    @app.post("/setup/launch")
    async def launch(request: Request):
        body = await request.json()
        command = body.get("command", [])
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        try:
            desktop.launch(argv)
        except (ValueError, FileNotFoundError) as exc:
            return JSONResponse({"status": "error", "message": str(exc)}, status_code=500)
        return PlainTextResponse(f"{' '.join(argv)} launched successfully")

    @app.post("/setup/open_file")
    async def open_file(request: Request):
        path = (await request.json()).get("path")
        if not path:
            return PlainTextResponse("Path not supplied!", status_code=400)
        try:
            desktop.open_file(path)
        except FileNotFoundError:
            return PlainTextResponse(f"File not found: {path}", status_code=404)
        return PlainTextResponse("File opened successfully")

    async def window_request(request: Request, close: bool):
        body = await request.json()
        name = body.get("window_name")
        if not name:
            return PlainTextResponse("window_name required", status_code=400)
        window = desktop.find_window(name, bool(body.get("strict", False)))
        if window is None:
            return PlainTextResponse(f"Window {name} not found", status_code=404)
        if close:
            desktop.state.windows.remove(window)
            return PlainTextResponse("Window closed successfully.")
        desktop.activate(window)
        return PlainTextResponse("Window activated successfully")

    @app.post("/setup/activate_window")
    async def activate_window(request: Request):
        return await window_request(request, close=False)

    @app.post("/setup/close_window")
    async def close_window(request: Request):
        return await window_request(request, close=True)

    @app.post("/setup/upload")
    async def upload(request: Request):
        form = await request.form()
        file_path, file_data = form.get("file_path"), form.get("file_data")
        if not isinstance(file_path, str) or file_data is None or isinstance(file_data, str):
            return JSONResponse({"error": "file_path and file_data are required"}, status_code=400)
        desktop.state.files[file_path] = await file_data.read()
        return PlainTextResponse("File Uploaded")

    @app.post("/file")
    async def get_file(request: Request):
        file_path = (await request.form()).get("file_path")
        if not isinstance(file_path, str):
            return JSONResponse({"error": "file_path is required"}, status_code=400)
        data = desktop.state.files.get(file_path)
        if data is None:
            return JSONResponse({"error": "File not found"}, status_code=404)
        return Response(data, media_type="application/octet-stream")

    return app


def _completed(output: str, error: str, returncode: int) -> dict:
    return {"status": "success", "output": output, "error": error, "returncode": returncode}


async def _monitor_session(desktop: Desktop, running: asyncio.Event, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
    """One HMP connection: a banner, then a prompt after every command's echo and output."""
    writer.write(b"QEMU 8.2.2 monitor - type 'help' for more information\r\n(qemu) ")
    try:
        while line := await reader.readline():
            command = line.decode(errors="replace").strip()
            output = _monitor_command(desktop, running, command)
            writer.write(f"{command}\r\n{output}(qemu) ".encode())
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _monitor_command(desktop: Desktop, running: asyncio.Event, command: str) -> str:
    verb, _, arg = command.partition(" ")
    if command == "stop":
        desktop.pause()
        running.clear()
        return ""
    if command == "cont":
        desktop.resume()
        running.set()
        return ""
    if command == "info status":
        return f"VM status: {'running' if running.is_set() else 'paused'}\r\n"
    if command == "info snapshots":
        if not desktop.snapshots:
            return "There is no snapshot available.\r\n"
        rows = "".join(f"--        {name:<17} 0 B 2026-01-01 00:00:00 00:00:00.000  0\r\n" for name in desktop.snapshots)
        return ("List of snapshots present on all disks:\r\n"
                "ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT\r\n" + rows)
    if verb == "savevm" and arg:
        desktop.save(arg)
        return ""
    if verb == "loadvm" and arg:
        if arg not in desktop.snapshots:
            return f"Error: Snapshot '{arg}' does not exist in one or more devices\r\n"
        desktop.load(arg)
        return ""
    if command == "quit":
        os._exit(0)
    return f"unknown command: '{verb}'\r\n"


def main(argv: list[str] | None = None) -> None:
    """Serve a test VM until SIGTERM/SIGINT."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m guiagent.envs.osworld.testvm", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (HTTP and monitor)")
    parser.add_argument("--port", type=int, default=5000, help="the OSWorld server's port")
    parser.add_argument("--monitor-port", type=int, default=None, help="QEMU-style monitor port (none: no monitor)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--lock-after", type=float, default=None, help="seconds of idle guest time before the screen locks")
    parser.add_argument("--die-after-executes", type=int, default=None, help="exit during the N-th /execute request")
    args = parser.parse_args(argv)
    desktop = Desktop(args.width, args.height, lock_after=args.lock_after)
    app = make_app(desktop, args.monitor_port, args.host, args.die_after_executes)
    # A bounded graceful shutdown: requests held by a stopped guest would otherwise keep SIGTERM waiting forever.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
