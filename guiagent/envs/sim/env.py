"""MobileSim as an in-process :class:`~guiagent.envs.base.Env`.

Canonical actions map onto the same device calls the virtual adbd makes for ``adb shell input ...``,
so an episode in-process and the same episode over adb take the same path through the simulator.
"""

from __future__ import annotations

from guiagent.actions.gestures import scroll_stroke
from guiagent.envs.base import Env, judged
from guiagent.envs.sim.device import MobileSim, keycode
from guiagent.errors import ActionError
from guiagent.types import Action, ActionType, Observation, Outcome, Task

_BUTTON_KEYS = {"back": 4, "home": 3, "menu": 82, "enter": 66, "app_switch": 187}
# Lower-case key names of ``Action.key`` that are not "KEYCODE_<NAME>" spelled differently.
_KEY_ALIASES = {"backspace": 67, "delete": 67, "del": 67, "return": 66, "esc": 111, "recents": 187}


class MobileSimEnv(Env):
    """One MobileSim phone in this process.

    Args:
        sim: The device to drive; a new one is built from the other arguments when None.
        width / height: Screen size of a new device.
        step_latency: Seconds each input sleeps on a new device (imitates a real phone).
        seed: Default world seed of a new device.
        env_id: Id recorded in trajectories.
    """

    def __init__(self, sim: MobileSim | None = None, *, width: int = 1080, height: int = 2400,
                 step_latency: float = 0.0, seed: int = 0, env_id: str = "sim-0"):
        self.sim = sim if sim is not None else MobileSim(width, height, step_latency=step_latency, seed=seed)
        self.env_id = env_id
        self._task: Task | None = None

    @property
    def screen_size(self) -> tuple[int, int]:
        return self.sim.size

    def reset(self, task: Task | None = None) -> Observation:
        self.sim.reset(task)
        self._task = task
        self.answer = None
        return self.observe()

    def observe(self) -> Observation:
        width, height = self.sim.size
        package, activity = self.sim.current_focus()
        return Observation(width=width, height=height, screenshot=self.sim.screenshot_png(),
                           a11y_tree=self.sim.dump_ui_xml(),
                           instruction=self._task.instruction if self._task is not None else "",
                           extras={"package": package, "activity": activity})

    def evaluate(self, task: Task) -> Outcome:
        """The task's own check on the simulator state, with the recorded answer (:func:`judge_mobilesim`)."""
        return judge_mobilesim(self.sim, task, self.answer)

    def execute(self, action: Action) -> None:
        """Run one canonical action. ANSWER records the text for answer tasks; TERMINATE changes nothing.

        Raises:
            ActionError: a coordinate off the screen, an unknown app or key, or an action type a phone
                has no equivalent for (right click, hover, hotkeys).
        """
        self.check_on_screen(action)
        sim, kind = self.sim, action.type
        if kind is ActionType.CLICK:
            sim.tap(*action.point)
        elif kind is ActionType.DOUBLE_CLICK:
            sim.tap(*action.point)
            sim.tap(*action.point)
        elif kind is ActionType.LONG_PRESS:
            sim.long_press(*action.point, duration_ms=int(1000 * (action.duration or 1.0)))
        elif kind in (ActionType.SWIPE, ActionType.DRAG):
            sim.swipe(*action.point, *action.end, duration_ms=int(1000 * (action.duration or 0.3)))
        elif kind is ActionType.SCROLL:
            # The same stroke the converters write for a scroll and the adb/Appium backends perform.
            (x1, y1), (x2, y2) = scroll_stroke(action.direction, sim.size, action.point, action.amount)
            sim.swipe(x1, y1, x2, y2, duration_ms=300)
        elif kind is ActionType.TYPE:
            sim.input_text(action.text)
        elif kind is ActionType.KEY:
            if len(action.keys) != 1:
                raise ActionError(f"MobileSim presses one key at a time, got {action.keys}")
            name = action.keys[0].lower()
            sim.keyevent(_KEY_ALIASES.get(name) or _BUTTON_KEYS.get(name) or keycode(name))
        elif kind is ActionType.SYSTEM_BUTTON:
            sim.keyevent(_BUTTON_KEYS[action.button.value])
        elif kind is ActionType.OPEN_APP:
            sim.start_app(sim.package_for(action.text))
        elif kind is ActionType.ANSWER:
            self.answer = action.text
        elif kind in (ActionType.WAIT, ActionType.TERMINATE):
            pass  # the simulator has nothing in flight to wait for
        else:
            raise ActionError(f"MobileSim has no equivalent for a {kind.value} action")


def judge_mobilesim(sim: MobileSim, task: Task, answer: str | None) -> Outcome:
    """Judge a MobileSim task from the device state; the agent's ``answer`` (None: none given) is what
    answer tasks check. The one judgement for both the in-process env and a MobileSim behind its virtual
    adbd (pass :func:`mobilesim_evaluation` to ``AndroidEnv(task_evaluation=...)``)."""
    sim.record_answer(answer if answer is not None else "")
    return judged(sim.is_successful(task))


def mobilesim_evaluation(sim: MobileSim):
    """A ``task_evaluation`` hook for an adb/Appium env driving ``sim`` through its virtual adbd."""
    return lambda env, task: judge_mobilesim(sim, task, env.answer)


def mobilesim_setup(sim: MobileSim):
    """A ``task_setup`` hook for an adb/Appium env driving ``sim``: reset the simulated world to the task."""
    return lambda env, task: sim.reset(task)


def build_farm_env(device_id: str, options: dict, restart: int = 0) -> Env:
    """A farm ``sim`` worker's device from its options (``width``, ``height``, ``step_latency``, ``faults``).

    With ``faults`` the env is wrapped in :class:`~guiagent.envs.sim.faults.FaultyEnv`; each device gets its own
    fault sequence, and a fresh one per restart (a restarted device must not crash on the same call again).
    """
    import zlib

    env: Env = MobileSimEnv(width=options.get("width", 1080), height=options.get("height", 2400),
                            step_latency=options.get("step_latency", 0.0), env_id=device_id)
    faults = options.get("faults") or {}
    if faults:
        from guiagent.envs.sim.faults import FaultyEnv

        seed = int(faults.get("seed", 0)) + zlib.crc32(device_id.encode()) + 1000 * restart
        env = FaultyEnv(env, **{**faults, "seed": seed})
    return env
