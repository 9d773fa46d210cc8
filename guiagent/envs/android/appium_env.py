"""The Appium backend: one Android device through an Appium server and the UiAutomator2 driver.

Use it where a farm already runs Appium (device clouds, existing test rigs). Gestures are W3C pointer
actions (one touch pointer), the accessibility tree is the page source (UiAutomator2's XML, the same
hierarchy ``uiautomator dump`` writes), screenshots are ``get_screenshot_as_png``. Options are set for
farms: a unique ``systemPort`` and ``mjpegServerPort`` per device, a short ``waitForIdleTimeout`` (the
10 s default stalls every command on screens that animate), ``noReset`` so sessions do not wipe app data,
and a bounded HTTP timeout on every command.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from guiagent.actions.gestures import scroll_stroke
from guiagent.envs.android.adb_env import decode_screenshot, keycode_for, load_snapshot_adb_emu, resolve_app
from guiagent.envs.android.config import AppiumEnvConfig
from guiagent.envs.base import Env, TaskEvaluation, evaluate_with
from guiagent.errors import ActionError, DeviceError, DeviceLost, DeviceTimeout
from guiagent.types import Action, ActionType, Observation, Outcome, Task

T = TypeVar("T")


def build_options(config: AppiumEnvConfig):
    """The ``UiAutomator2Options`` a farm device session starts with."""
    from appium.options.android import UiAutomator2Options

    options = UiAutomator2Options()
    options.udid = config.udid
    options.system_port = config.system_port
    options.mjpeg_server_port = config.mjpeg_server_port
    options.adb_port = config.adb_server_port
    options.new_command_timeout = config.new_command_timeout_s
    options.adb_exec_timeout = config.adb_exec_timeout_ms
    options.uiautomator2_server_launch_timeout = config.server_launch_timeout_ms
    options.no_reset = True  # resets are snapshot loads; a session must not clear app data
    options.full_reset = False
    options.disable_window_animation = True
    options.skip_unlock = True
    # A driver setting accepted as a capability, so it applies from the first command on.
    options.set_capability("appium:settings[waitForIdleTimeout]", config.wait_for_idle_timeout_ms)
    return options


class AppiumEnv(Env):
    """An :class:`~guiagent.envs.base.Env` on one Android device via Appium (UiAutomator2).

    Args:
        config: Server, device ports, timeouts and gesture settings.
        task_setup: Called as ``task_setup(env, task)`` after the snapshot load of :meth:`reset`.
        task_evaluation: Called as ``task_evaluation(env, task)`` by :meth:`evaluate` (see ``AndroidEnv``).
    """

    def __init__(self, config: AppiumEnvConfig, task_setup: Callable[[AppiumEnv, Task], None] | None = None,
                 task_evaluation: TaskEvaluation | None = None):
        from appium import webdriver
        from appium.webdriver.client_config import AppiumClientConfig

        self.config = config
        self.env_id = config.udid
        self._task_setup = task_setup
        self._task_evaluation = task_evaluation
        self._instruction = ""
        self._size: tuple[int, int] | None = None
        client = AppiumClientConfig(remote_server_addr=config.server_url, timeout=config.timeout)
        self.driver = self._call("new session", lambda: webdriver.Remote(
            config.server_url, options=build_options(config), client_config=client))
        # Apply again as a setting: older UiAutomator2 drivers ignore the settings[...] capability.
        self._call("update settings", lambda: self.driver.update_settings(
            {"waitForIdleTimeout": config.wait_for_idle_timeout_ms}))

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """Run one Appium command, mapping transport and session failures onto the DeviceError tree."""
        from selenium.common.exceptions import InvalidSessionIdException, TimeoutException, WebDriverException
        from urllib3.exceptions import MaxRetryError, ProtocolError, ReadTimeoutError

        try:
            return call()
        except (TimeoutException, ReadTimeoutError, TimeoutError) as exc:
            raise DeviceTimeout(f"{self.env_id}: Appium {what} did not answer within {self.config.timeout}s") from exc
        except (InvalidSessionIdException, MaxRetryError, ProtocolError, ConnectionError) as exc:
            raise DeviceLost(f"{self.env_id}: Appium {what}: session or server gone: {exc}") from exc
        except WebDriverException as exc:
            raise DeviceError(f"{self.env_id}: Appium {what} failed: {exc.msg}") from exc

    @property
    def screen_size(self) -> tuple[int, int]:
        if self._size is None:
            self._size = decode_screenshot(self.env_id, self._screenshot()).size
        return self._size

    def _screenshot(self) -> bytes:
        return self._call("screenshot", self.driver.get_screenshot_as_png)

    def observe(self) -> Observation:
        png = self._screenshot()
        img = decode_screenshot(self.env_id, png)
        self._size = img.size
        return Observation(width=img.width, height=img.height, screenshot=png,
                           a11y_tree=self._call("page source", lambda: self.driver.page_source),
                           instruction=self._instruction)

    def reset(self, task: Task | None = None) -> Observation:
        self._instruction = task.instruction if task is not None else ""
        self.answer = None
        snapshot = task.snapshot if task is not None and task.snapshot else self.config.snapshot_name
        if snapshot:
            load_snapshot_adb_emu(self.config, self.config.udid, snapshot)
        if task is not None and self._task_setup is not None:
            self._task_setup(self, task)
        return self.observe()

    def _gesture(self, points: list[tuple[int, int]], press_s: float, move_ms: int) -> None:
        """One touch pointer: down at ``points[0]``, hold ``press_s``, move through the rest, lift (W3C actions)."""
        from selenium.webdriver.common.actions import interaction
        from selenium.webdriver.common.actions.action_builder import ActionBuilder
        from selenium.webdriver.common.actions.mouse_button import MouseButton
        from selenium.webdriver.common.actions.pointer_input import PointerInput

        finger = PointerInput(interaction.POINTER_TOUCH, "finger")
        finger.create_pointer_move(duration=0, x=points[0][0], y=points[0][1])
        finger.create_pointer_down(button=MouseButton.LEFT)
        if press_s:
            finger.create_pause(press_s)
        for x, y in points[1:]:
            finger.create_pointer_move(duration=move_ms, x=x, y=y)
        finger.create_pointer_up(button=MouseButton.LEFT)
        builder = ActionBuilder(self.driver, mouse=finger)
        self._call("actions", builder.perform)

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
        points = [(int(round(x)), int(round(y))) for x, y in action.points()]
        if kind in (ActionType.CLICK, ActionType.DOUBLE_CLICK, ActionType.TRIPLE_CLICK):
            for _ in range({ActionType.CLICK: 1, ActionType.DOUBLE_CLICK: 2, ActionType.TRIPLE_CLICK: 3}[kind]):
                self._gesture(points, 0.0, 0)
        elif kind is ActionType.LONG_PRESS:
            self._gesture(points, action.duration or self.config.long_press_ms / 1000, 0)
        elif kind in (ActionType.SWIPE, ActionType.DRAG):
            ms = int(action.duration * 1000) if action.duration else self.config.swipe_ms
            # A drag holds first so the view starts a drag-and-drop instead of a fling.
            self._gesture(points, 0.6 if kind is ActionType.DRAG else 0.0, ms)
        elif kind is ActionType.SCROLL:
            start, end = scroll_stroke(action.direction, self.screen_size, action.point, action.amount)
            self._gesture([start, end], 0.0, self.config.swipe_ms)
        elif kind is ActionType.TYPE:
            self._call("type", lambda: self.driver.switch_to.active_element.send_keys(action.text))
        elif kind in (ActionType.KEY, ActionType.SYSTEM_BUTTON):
            code = keycode_for(action)
            self._call("press key", lambda: self.driver.press_keycode(code))
        elif kind is ActionType.OPEN_APP:
            target = resolve_app(action.text or "", self.config.app_packages, self._installed_packages)
            package = target.split("/", 1)[0]
            self._call("activate app", lambda: self.driver.activate_app(package))
        elif kind is ActionType.WAIT:
            time.sleep(action.duration if action.duration is not None else 1.0)
        else:
            raise ActionError(f"{kind.value} has no touch-screen equivalent on Android")

    def _installed_packages(self) -> list[str]:
        # `mobile: shell` needs the Appium server started with --relaxed-security; app_packages avoids it.
        out = self._call("list packages", lambda: self.driver.execute_script(
            "mobile: shell", {"command": "pm", "args": ["list", "packages"]}))
        return [line.split(":", 1)[1].strip() for line in str(out).splitlines() if line.startswith("package:")]

    def close(self) -> None:
        driver, self.driver = getattr(self, "driver", None), None
        if driver is not None:
            try:
                driver.quit()
            except Exception:  # the session may already be gone; closing must not raise
                pass
