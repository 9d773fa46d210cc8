"""The canonical action space at guiagent's borders.

* :mod:`guiagent.actions.coords`: device pixels <-> model image space (``smart_resize``).
* :mod:`guiagent.actions.formats`: parse/format model output (Qwen2.5-VL / Qwen3-VL tool calls, UI-S1).
* :mod:`guiagent.actions.convert`: datasets' and environments' action formats (AITW, AndroidControl,
  AndroidWorld, GUI-Odyssey, OSWorld, MiniWoB++), and the scroll <-> swipe conventions between them.
* :mod:`guiagent.actions.gestures`: the one rule for performing a SCROLL (the finger stroke on a touch
  screen, the wheel turn with a mouse), shared by the converters, the formats and every env.
* :mod:`guiagent.actions.space`: :class:`ActionSpaceConfig`, a policy's answer format and resize bounds.

The action type itself is :class:`guiagent.types.Action` (device pixels).
"""

from guiagent.actions.convert import (
    AITW_TAP_DISTANCE,
    AitwAction,
    AitwActionType,
    from_aitw,
    from_androidcontrol,
    from_androidworld,
    from_computer13,
    from_miniwob,
    from_odyssey,
    from_osworld_pyautogui,
    scroll_to_swipe,
    swipe_to_scroll,
    to_aitw,
    to_androidcontrol,
    to_androidworld,
    to_computer13,
    to_miniwob,
    to_odyssey,
    to_osworld_pyautogui,
)
from guiagent.actions.coords import ModelGeometry, model_geometry
from guiagent.actions.formats import (
    ActionFormat,
    ParseFailure,
    format_action,
    model_geometry_for,
    parse_action,
)
from guiagent.actions.gestures import SCROLL_TRAVEL, scroll_stroke, wheel_delta, wheel_scroll
from guiagent.actions.space import ActionSpaceConfig

__all__ = [
    "AITW_TAP_DISTANCE",
    "SCROLL_TRAVEL",
    "ActionFormat",
    "ActionSpaceConfig",
    "AitwAction",
    "AitwActionType",
    "ModelGeometry",
    "ParseFailure",
    "format_action",
    "from_aitw",
    "from_androidcontrol",
    "from_androidworld",
    "from_computer13",
    "from_miniwob",
    "from_odyssey",
    "from_osworld_pyautogui",
    "model_geometry",
    "model_geometry_for",
    "parse_action",
    "scroll_stroke",
    "scroll_to_swipe",
    "swipe_to_scroll",
    "to_aitw",
    "to_androidcontrol",
    "to_androidworld",
    "to_computer13",
    "to_miniwob",
    "to_odyssey",
    "to_osworld_pyautogui",
    "wheel_delta",
    "wheel_scroll",
]
