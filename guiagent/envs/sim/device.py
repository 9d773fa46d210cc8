"""MobileSim: one simulated Android phone, deterministic and thread-safe.

The device API mirrors what adb offers (``input tap|swipe|text|keyevent``, ``screencap``,
``uiautomator dump``, ``am start``, ``am force-stop``, ``dumpsys window``, ``getprop``) so the virtual
adbd can map each shell command onto one method, and the in-process env calls the same methods.

Every screen is a pure function of the world state (see :mod:`guiagent.envs.sim.apps`), so the same
seed and the same inputs give byte-identical screenshots and XML. Renders are cached by state, so
observing twice, or coming back to a state seen recently, costs nothing.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from collections import OrderedDict, deque
from typing import Any

from PIL import Image

from guiagent.envs.sim import apps
from guiagent.envs.sim.apps import KEYBOARD, LAUNCHER, SYSTEMUI, Kit
from guiagent.envs.sim.ui import Node, dump_xml, finalize, find_scrollable, hit_test, iter_nodes, render
from guiagent.errors import ActionError, DataError
from guiagent.images import encode_png
from guiagent.types import Task

# Android KeyEvent codes MobileSim understands (android.view.KeyEvent).
KEYCODES: dict[str, int] = {
    "KEYCODE_HOME": 3, "KEYCODE_BACK": 4, "KEYCODE_DPAD_UP": 19, "KEYCODE_DPAD_DOWN": 20,
    "KEYCODE_POWER": 26, "KEYCODE_TAB": 61, "KEYCODE_SPACE": 62, "KEYCODE_ENTER": 66, "KEYCODE_DEL": 67,
    "KEYCODE_MENU": 82, "KEYCODE_SEARCH": 84, "KEYCODE_ESCAPE": 111, "KEYCODE_FORWARD_DEL": 112,
    "KEYCODE_APP_SWITCH": 187,
    **{f"KEYCODE_{d}": 7 + d for d in range(10)},
    **{f"KEYCODE_{chr(ord('A') + i)}": 29 + i for i in range(26)},
}
KEY_HOME, KEY_BACK, KEY_ENTER, KEY_DEL, KEY_APP_SWITCH = 3, 4, 66, 67, 187
# Swipes shorter than this (pixels) are presses, as Android's touch slop makes them.
TOUCH_SLOP = 20
LONG_PRESS_MS = 500
_RENDER_CACHE_SIZE = 16
INPUT_LOG_SIZE = 256  # input events MobileSim remembers (:meth:`MobileSim.inputs`)
MAX_SIDE = 4096  # pixels: beyond any phone; every frame is rendered and PNG-encoded at this size
MAX_STEP_LATENCY = 10.0  # seconds per input: a slow real device takes about 1


def keycode(code: int | str) -> int:
    """``3``, ``"3"``, ``"KEYCODE_HOME"`` or ``"HOME"`` → 3.

    Raises:
        ActionError: an unknown key name.
    """
    if isinstance(code, int):
        return code
    text = str(code).strip().upper()
    if text.isdigit():
        return int(text)
    name = text if text.startswith("KEYCODE_") else f"KEYCODE_{text}"
    if name not in KEYCODES:
        raise ActionError(f"unknown key code {code!r}")
    return KEYCODES[name]


class MobileSim:
    """One simulated phone.

    Args:
        width: Screen width in pixels.
        height: Screen height in pixels.
        step_latency: Seconds every input (tap, swipe, key, text, app start) sleeps after it is applied,
            to imitate a real device's input and redraw delay. The sleep happens outside the state
            lock, so screenshots of other connections are not held up.
        seed: Seed of the default world (used by ``reset()`` without a task).

    Attributes:
        files: A tiny filesystem (path → bytes) for ``adb push/pull``, ``cat``, ``rm``.
        props: ``getprop`` values.
    """

    def __init__(self, width: int = 1080, height: int = 2400, step_latency: float = 0.0, seed: int = 0):
        if not (320 <= width <= MAX_SIDE and 480 <= height <= MAX_SIDE):
            raise ValueError(f"MobileSim screens are 320x480 to {MAX_SIDE}x{MAX_SIDE} pixels, got {width}x{height}")
        if not 0 <= step_latency <= MAX_STEP_LATENCY:  # NaN included
            raise ValueError(f"step_latency must be 0 to {MAX_STEP_LATENCY} seconds, got {step_latency}")
        self.width, self.height = int(width), int(height)
        self.step_latency = float(step_latency)
        self.seed = seed
        self._lock = threading.RLock()
        self._inputs: deque[tuple] = deque(maxlen=INPUT_LOG_SIZE)
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._task: Task | None = None
        self.files: dict[str, bytes] = {}
        self.props: dict[str, str] = {}
        self.reset()

    # --- State --------------------------------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def task(self) -> Task | None:
        """The task the device was last reset for."""
        return self._task

    def reset(self, task: Task | None = None) -> None:
        """Put the device in the task's initial state: fresh seeded world, home screen, empty files."""
        from guiagent.envs.sim.tasks import TEMPLATES  # tasks import apps; keep the module graph acyclic

        world = apps.initial_world(task.seed if task is not None else self.seed)
        if task is not None:
            if task.template not in TEMPLATES:
                raise ActionError(f"task {task.task_id}: unknown MobileSim template {task.template!r}")
            TEMPLATES[task.template].setup(world, dict(task.params))
        with self._lock:
            self._world = world
            self._task = task
            self.files = {}
            self.props = {
                "ro.build.version.sdk": "34", "ro.build.version.release": "14",
                "ro.product.model": "MobileSim", "ro.product.manufacturer": "guiagent",
                "ro.product.name": "mobilesim", "ro.product.cpu.abi": "x86_64",
                "ro.build.display.id": world["about"]["build_number"], "ro.serialno": world["about"]["serial"],
                "sys.boot_completed": "1", "dev.bootcomplete": "1", "init.svc.bootanim": "stopped",
            }

    def is_successful(self, task: Task | None = None) -> bool:
        """Whether ``task`` (default: the task of the last reset) is done, read from the device state."""
        from guiagent.envs.sim.tasks import TEMPLATES

        task = task if task is not None else self._task
        if task is None:
            raise ActionError("is_successful needs a task: the device was reset without one")
        with self._lock:
            return TEMPLATES[task.template].check(self._world, dict(task.params))

    def record_answer(self, text: str) -> None:
        """Store the agent's ANSWER text so answer-type tasks can check it."""
        with self._lock:
            self._world["answer"] = str(text)

    def state(self) -> dict[str, Any]:
        """A deep copy of the world state (for tests, debugging and task checks)."""
        with self._lock:
            return copy.deepcopy(self._world)

    def snapshot(self) -> dict[str, Any]:
        """The whole device state as JSON values (files base64-encoded)."""
        with self._lock:
            return {
                "format": "mobilesim-snapshot/1",
                "world": copy.deepcopy(self._world),
                "task": self._task.to_json() if self._task is not None else None,
                "files": {path: base64.b64encode(data).decode("ascii") for path, data in self.files.items()},
                "props": dict(self.props),
            }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Go back to a state saved by :meth:`snapshot`.

        Raises:
            DataError: the snapshot is not a MobileSim snapshot.
        """
        if not isinstance(snapshot, dict) or snapshot.get("format") != "mobilesim-snapshot/1":
            raise DataError("not a MobileSim snapshot (format must be 'mobilesim-snapshot/1')", record="snapshot")
        try:
            world = copy.deepcopy(snapshot["world"])
            task = Task.from_json(snapshot["task"]) if snapshot["task"] is not None else None
            files = {p: base64.b64decode(d) for p, d in snapshot["files"].items()}
            props = {str(k): str(v) for k, v in snapshot["props"].items()}
            missing = {"settings", "contacts", "shopping", "alarms", "browser", "calculator", "ui"} - set(world)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"corrupt MobileSim snapshot: {exc!r}", record="snapshot") from None
        if missing:
            raise DataError(f"MobileSim snapshot world lacks {sorted(missing)}", record="snapshot")
        with self._lock:
            self._world, self._task, self.files, self.props = world, task, files, props

    # --- Observation --------------------------------------------------------------------------------------
    def _entry(self) -> dict[str, Any]:
        """The render cache entry of the current state (tree built on first use)."""
        key = json.dumps(self._world["ui"], sort_keys=True) + json.dumps(
            {k: v for k, v in self._world.items() if k not in ("ui", "answer")}, sort_keys=True)
        entry = self._cache.get(key)
        if entry is None:
            entry = {"tree": self._build_tree()}
            self._cache[key] = entry
            if len(self._cache) > _RENDER_CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return entry

    def view_tree(self) -> Node:
        """The current view tree (shared with the cache: read it, don't change it)."""
        with self._lock:
            return self._entry()["tree"]

    def screenshot_rgb(self) -> Image.Image:
        """The current screen as an RGB image of :attr:`size` (a copy the caller may modify)."""
        with self._lock:
            entry = self._entry()
            if "image" not in entry:
                entry["image"] = render(entry["tree"], self.size, "#000000")
            return entry["image"].copy()

    def screenshot_png(self) -> bytes:
        """The current screen as PNG bytes (what ``screencap -p`` returns)."""
        with self._lock:
            entry = self._entry()
            if "png" not in entry:
                if "image" not in entry:
                    entry["image"] = render(entry["tree"], self.size, "#000000")
                entry["png"] = encode_png(entry["image"])
            return entry["png"]

    def dump_ui_xml(self) -> str:
        """uiautomator-style XML of the current screen; bounds are the drawn pixels."""
        with self._lock:
            entry = self._entry()
            if "xml" not in entry:
                entry["xml"] = dump_xml(entry["tree"])
            return entry["xml"]

    def current_focus(self) -> tuple[str, str]:
        """``(package, activity)`` of the focused window."""
        with self._lock:
            return apps.activity(self._world)

    def packages(self) -> list[str]:
        """Installed packages (``pm list packages``)."""
        return [LAUNCHER, SYSTEMUI, KEYBOARD, *apps.APPS]

    def package_for(self, name: str) -> str:
        """Package of an app given its label (``"Shopping List"``, any case) or its package name.

        Raises:
            ActionError: no such app.
        """
        wanted = " ".join(name.split()).lower()
        for pkg, (label, _, _) in apps.APPS.items():
            if wanted in (pkg, label.lower()):
                return pkg
        if wanted in (LAUNCHER, "launcher", "home"):
            return LAUNCHER
        raise ActionError(f"no app named {name!r} on MobileSim (apps: {', '.join(a[0] for a in apps.APPS.values())})")

    # --- Input --------------------------------------------------------------------------------------------
    def inputs(self) -> list[tuple]:
        """The last :data:`INPUT_LOG_SIZE` input events this device received, oldest first, as the device
        saw them (whichever path they came by: in-process, the virtual adbd, the emulator gRPC service):
        ``("tap", x, y)``, ``("long_press", x, y, duration_ms)``, ``("swipe", x1, y1, x2, y2, duration_ms)``,
        ``("text", text)``, ``("key", code)``. A reset does not clear it.
        """
        with self._lock:
            return list(self._inputs)

    def tap(self, x: float, y: float) -> None:
        with self._lock:
            self._inputs.append(("tap", x, y))
            node = hit_test(self._entry()["tree"], x, y)
            if node is not None:
                self._dispatch(node.on_tap)
        self._pause()

    def long_press(self, x: float, y: float, duration_ms: int = 1000) -> None:
        with self._lock:
            self._inputs.append(("long_press", x, y, duration_ms))
            self._long_press(x, y)
        self._pause()

    def swipe(self, x1: float, y1: float, x2: float, y2: float, duration_ms: int = 300) -> None:
        """A finger moving from ``(x1, y1)`` to ``(x2, y2)``; a scroll list under the start point follows it."""
        with self._lock:
            self._inputs.append(("swipe", x1, y1, x2, y2, duration_ms))
            dx, dy = x2 - x1, y2 - y1
            if (dx * dx + dy * dy) ** 0.5 < TOUCH_SLOP:
                if duration_ms >= LONG_PRESS_MS:
                    self._long_press(x1, y1)
                else:
                    node = hit_test(self._entry()["tree"], x1, y1)
                    if node is not None:
                        self._dispatch(node.on_tap)
            elif abs(dy) >= abs(dx):
                container = find_scrollable(self._entry()["tree"], x1, y1)
                screen = apps.top(self._world)
                if container is not None and screen is not None and not self._world["ui"]["overlay"]:
                    # The content follows the finger exactly (no fling), so scrolls are reproducible.
                    current = min(screen["scroll"], container.style["max_scroll"])
                    screen["scroll"] = int(max(0, min(container.style["max_scroll"], current - round(dy))))
        self._pause()

    def input_text(self, text: str) -> None:
        """Type ``text`` into the focused field (dropped when no field has focus, as on Android)."""
        with self._lock:
            self._inputs.append(("text", str(text)))
            for i, line in enumerate(str(text).split("\n")):
                if i:
                    self._key(KEY_ENTER)
                self._type(line)
        self._pause()

    def keyevent(self, code: int | str) -> None:
        code = keycode(code)
        with self._lock:
            self._inputs.append(("key", code))
            self._key(code)
        self._pause()

    def start_app(self, package: str, activity: str | None = None) -> None:
        """``am start`` / ``monkey -p``: bring the app to the front at its main activity.

        Raises:
            ActionError: unknown package or activity.
        """
        with self._lock:
            if package == LAUNCHER:
                self._key(KEY_HOME)
            elif package not in apps.APPS:
                raise ActionError(f"unknown package {package!r}")
            else:
                if activity:
                    main = next(iter(apps.APPS[package][2].values()))
                    # ".Settings", "com.android.settings.Settings" and "pkg/.Settings" all name the same one.
                    short = activity.split("/")[-1]
                    short = short[len(package):] if short.startswith(package + ".") else short
                    if short != main:
                        raise ActionError(f"Activity class {{{package}/{activity}}} does not exist")
                apps.launch(self._world, package)
        self._pause()

    def force_stop(self, package: str) -> None:
        with self._lock:
            apps.force_stop(self._world, package)

    # --- Internals ----------------------------------------------------------------------------------------
    def _pause(self) -> None:
        if self.step_latency:
            time.sleep(self.step_latency)

    def _long_press(self, x: float, y: float) -> None:
        tree = self._entry()["tree"]
        node = hit_test(tree, x, y, long=True)
        if node is not None:
            self._dispatch(node.on_long)
            return
        # No long-click listener: Android delivers the click when the finger lifts.
        node = hit_test(tree, x, y)
        if node is not None:
            self._dispatch(node.on_tap)

    def _dispatch(self, event: tuple) -> None:
        world = self._world
        ui = world["ui"]
        kind = event[0]
        if kind == "key":
            self._key(event[1])
        elif kind == "focus":
            ui["focus"], ui["shift"] = event[1], False
        elif kind == "clear":
            apps.top(world)["fields"][event[1]] = ""
        elif kind == "type":
            self._type(event[1].upper() if ui["shift"] else event[1])
            ui["shift"] = False
        elif kind == "shift":
            ui["shift"] = not ui["shift"]
        else:
            apps.handle(world, event)
        screen = apps.top(world)
        if ui["focus"] is not None and (screen is None or screen["dialog"] or ui["overlay"]):
            ui["focus"] = None  # a dialog or another window takes the focus away from text fields

    def _type(self, text: str) -> None:
        screen = apps.top(self._world)
        field = self._world["ui"]["focus"]
        if screen is not None and field is not None and text:
            screen["fields"][field] = screen["fields"].get(field, "") + text

    def _key(self, code: int) -> None:
        world = self._world
        ui = world["ui"]
        screen = apps.top(world)
        if code == KEY_HOME:
            ui["overlay"], ui["focus"], ui["foreground"] = None, None, LAUNCHER
        elif code == KEY_BACK:
            if ui["overlay"]:
                ui["overlay"] = None
            elif ui["focus"] is not None:
                ui["focus"] = None  # the first back only hides the keyboard
            elif screen is not None and screen["dialog"]:
                screen["dialog"] = None
            elif screen is not None:
                apps.pop(world)
        elif code == KEY_APP_SWITCH:
            ui["overlay"] = None if ui["overlay"] else "recents"
            ui["focus"] = None
        elif code == KEY_ENTER:
            focused = next((n for n in iter_nodes(self._entry()["tree"]) if n.focused), None)
            if focused is not None and focused.style.get("submit"):
                self._dispatch(focused.style["submit"])
        elif code == KEY_DEL:
            if screen is not None and ui["focus"] is not None:
                screen["fields"][ui["focus"]] = screen["fields"].get(ui["focus"], "")[:-1]
        elif code == KEYCODES["KEYCODE_SPACE"]:
            self._type(" ")
        elif 7 <= code <= 16:
            self._type(str(code - 7))
        elif 29 <= code <= 54:
            self._type(chr(ord("a") + code - 29))
        # Other keys (menu, power, dpad, tab, ...) change nothing in MobileSim's apps.

    def _build_tree(self) -> Node:
        world = self._world
        ui = world["ui"]
        k = Kit(world, self.width, self.height)
        w, h = self.width, self.height
        status_h, nav_h = k.px(84), k.px(132)
        screen = apps.top(world)
        keyboard = ui["focus"] is not None and screen is not None and not ui["overlay"]
        kb_h = k.px(780) if keyboard else 0
        package = LAUNCHER if ui["overlay"] or screen is None else ui["foreground"]
        root = Node("android.widget.FrameLayout", (0, 0, w, h), style={"bg": k.t["bg"]})
        if ui["overlay"] == "recents":
            content = apps.build_recents(k, world, (0, status_h, w, h - nav_h))
        elif screen is None:
            content = apps.build_launcher(k, world, (0, status_h, w, h - nav_h))
        else:
            content = apps.BUILDERS[ui["foreground"]](k, world, screen, (0, status_h, w, h - nav_h - kb_h))
        root.add(_status_bar(k, world, (0, 0, w, status_h), dark=screen is None or bool(ui["overlay"])), content)
        if screen is not None and screen["dialog"] and not ui["overlay"]:
            content.covered = True
            root.add(*apps.build_dialog(k, screen["dialog"], (0, status_h, w, h - nav_h)))
        if keyboard:
            root.add(_keyboard(k, world, (0, h - nav_h - kb_h, w, h - nav_h)))
        root.add(_nav_bar(k, (0, h - nav_h, w, h)))
        return finalize(root, package)


def _status_bar(k: Kit, world: dict, rect: tuple[int, int, int, int], dark: bool) -> Node:
    s = world["settings"]
    bg, fg = ("#2b3a55", "#ffffff") if dark else (k.t["bar"], k.t["fg"])
    bar = Node("android.widget.FrameLayout", rect, package=SYSTEMUI, rid=f"{SYSTEMUI}:id/status_bar",
               style={"bg": bg})
    x1, y1, x2, y2 = rect
    bar.add(Node("android.widget.TextView", (x1 + k.px(48), y1, x1 + k.px(300), y2), text="10:00", package=SYSTEMUI,
                 rid=f"{SYSTEMUI}:id/clock", style={"size": k.px(38), "fg": fg}))
    icons = [name for key, name in (("airplane", "✈"), ("wifi", "Wi-Fi"), ("bluetooth", "BT"), ("dnd", "DND"),
                                     ("battery_saver", "Saver")) if s[key]]
    bar.add(Node("android.widget.TextView", (x2 - k.px(700), y1, x2 - k.px(40), y2), text="  ".join(icons + ["100%"]),
                 package=SYSTEMUI, rid=f"{SYSTEMUI}:id/system_icons",
                 style={"size": k.px(34), "fg": fg, "align": "right"}))
    return bar


def _nav_bar(k: Kit, rect: tuple[int, int, int, int]) -> Node:
    x1, y1, x2, y2 = rect
    bar = Node("android.widget.FrameLayout", rect, package=SYSTEMUI, rid=f"{SYSTEMUI}:id/navigation_bar_frame",
               style={"bg": "#000000"})
    third = (x2 - x1) // 3
    for i, (name, glyph, code) in enumerate((("back", "◀", KEY_BACK), ("home", "●", KEY_HOME),
                                             ("recent_apps", "■", KEY_APP_SWITCH))):
        bar.add(Node("android.widget.ImageView", (x1 + i * third, y1, x1 + (i + 1) * third, y2), package=SYSTEMUI,
                     rid=f"{SYSTEMUI}:id/{name}", desc={"back": "Back", "home": "Home"}.get(name, "Overview"),
                     on_tap=("key", code), style={"glyph": glyph, "fg": "#e8eaed", "align": "center",
                                                  "size": k.px(48)}))
    return bar


_KEY_ROWS = ["1234567890", "qwertyuiop", "asdfghjkl"]


def _keyboard(k: Kit, world: dict, rect: tuple[int, int, int, int]) -> Node:
    """A QWERTY soft keyboard; letter keys type lower case, or upper case after Shift."""
    x1, y1, x2, y2 = rect
    dark = world["settings"]["dark_mode"]
    board = Node("android.widget.FrameLayout", rect, package=KEYBOARD, rid=f"{KEYBOARD}:id/keyboard",
                 style={"bg": "#303134" if dark else "#e8eaed"})
    key_bg, key_fg = ("#5f6368", "#ffffff") if dark else ("#ffffff", "#202124")
    rows = 5
    row_h = (y2 - y1 - k.px(20)) // rows
    unit = (x2 - x1) / 10
    shift = world["ui"]["shift"]

    def key(col: float, row: int, span: float, label: str, desc: str, event: tuple, accent: bool = False) -> None:
        gap = k.px(8)
        r = (int(x1 + col * unit) + gap, y1 + k.px(10) + row * row_h + gap,
             int(x1 + (col + span) * unit) - gap, y1 + k.px(10) + (row + 1) * row_h - gap)
        board.add(Node("android.widget.Button", r, text=label, desc=desc, package=KEYBOARD,
                       rid=f"{KEYBOARD}:id/key", on_tap=event,
                       style={"bg": ("#8ab4f8" if dark else "#aecbfa") if accent else key_bg, "fg": key_fg,
                              "radius": k.px(14), "size": k.px(50), "align": "center"}))

    for row, chars in enumerate(_KEY_ROWS):
        offset = 0.5 if row == 2 else 0.0
        for i, ch in enumerate(chars):
            label = ch.upper() if shift else ch
            key(offset + i, row, 1, label, label, ("type", ch))
    key(0, 3, 1.5, "⇧", "shift", ("shift",), accent=shift)
    for i, ch in enumerate("zxcvbnm"):
        label = ch.upper() if shift else ch
        key(1.5 + i, 3, 1, label, label, ("type", ch))
    key(8.5, 3, 1.5, "⌫", "delete", ("key", KEY_DEL))
    key(0, 4, 1, "@", "@", ("type", "@"))
    key(1, 4, 1, ",", ",", ("type", ","))
    key(2, 4, 5, "space", "space", ("type", " "))
    key(7, 4, 1, ".", ".", ("type", "."))
    key(8, 4, 2, "⏎", "enter", ("key", KEY_ENTER), accent=True)
    return board
