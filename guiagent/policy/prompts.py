"""Prompts for GUI policies: tool-call system prompts, a bounded history window, chat encoding.

The answer format and the resize bounds come from one place, :class:`guiagent.actions.ActionSpaceConfig`
(``PromptConfig.actions``), the same object the parser (:func:`guiagent.actions.parse_action`), the rewards
and the evaluators read, so the prompt can never state a resolution or format the parser does not use.
The prompt style follows ``actions.format``:

* ``qwen25vl_mobile`` / ``qwen25vl_computer``: Qwen2.5-VL's agent prompts in the style of the Qwen cookbook —
  a system message that declares one function (``mobile_use`` / ``computer_use``, its JSON schema inside
  ``<tools>``) and asks for ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``. The screen
  resolution the prompt states is the ``smart_resize``d one (:meth:`ActionSpaceConfig.geometry`), because
  Qwen2.5-VL answers in pixels of the image it was shown.
* ``qwen3vl_mobile`` / ``qwen3vl_computer``: the same tools, but Qwen3-VL answers in coordinates relative
  to the screen, integers 0-999 for each axis; the prompt says so, as the Qwen3-VL cookbook's agent
  prompts do (they state a 1000x1000 screen in place of the image's size).
* ``uis1``: UI-S1's format (arXiv 2509.11543): the model thinks in ``<think>…</think>`` and answers with
  one JSON action (``mobile_use`` arguments, resized-image pixels) in ``<action>…</action>``.

History window (one rule, never silent): with ``history_images = k``, the current screenshot and the
screenshots of the last ``k - 1`` previous steps are shown as images, each previous one followed by the
assistant turn the policy wrote there; every older step is written as one text line (its short summary,
or its response when it has none) in a "previous actions" block. :func:`encode_prompt` then checks that
the tokenised prompt holds exactly the image tokens the processed images need, so no image is dropped
or truncated unnoticed.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from guiagent.actions import ActionSpaceConfig
from guiagent.config import StrictModel
from guiagent.errors import PolicyError
from guiagent.types import Step, Trajectory

ImageInput = Any  # PIL.Image.Image, encoded bytes (PNG/JPEG), a file path, or a "data:image/...;base64," URL

# Tool each tool-call format declares, and whether its coordinates are relative (Qwen3-VL) or pixels of
# the resized image (Qwen2.5-VL). UI-S1 has no tool call; its action JSON holds mobile_use arguments.
_TOOLS = {
    "qwen25vl_mobile": ("mobile_use", False),
    "qwen25vl_computer": ("computer_use", False),
    "qwen3vl_mobile": ("mobile_use", True),
    "qwen3vl_computer": ("computer_use", True),
}


class PromptConfig(StrictModel):
    """How a policy prompt is built: answer format and resize bounds (``actions``), history window."""

    actions: ActionSpaceConfig = Field(
        default_factory=ActionSpaceConfig,
        description="Answer format and smart_resize bounds; the parser reads answers with the same section.",
    )
    history_images: int = Field(
        1, ge=1, description="Screenshots shown as images: the current one plus the last (k-1) previous steps'."
    )
    history_text_steps: int = Field(
        16, ge=0, description="Older steps written as text lines, newest kept; 0 drops text history."
    )

    def geometry(self, width: int, height: int):
        """The :class:`guiagent.actions.ModelGeometry` of a screenshot (``actions.geometry``).

        Parse the policy's answer with it: its resized size is the size of the image the prompt shows and,
        for pixel formats, the resolution the prompt states.
        """
        return self.actions.geometry(width, height)


@dataclass(frozen=True)
class HistoryStep:
    """One previous step of the episode, as the prompt shows it.

    Attributes:
        response: The assistant text the policy wrote at that step (thought + action, model format).
        summary: A short description of the action (e.g. ``click (540, 1200)``), used once the step falls
            out of the image window; None means use ``response``.
        screenshot: The screenshot the policy saw at that step; needed only inside the image window.
    """

    response: str
    summary: str | None = None
    screenshot: ImageInput | None = None


def history_from_steps(steps: Sequence[Step], image_root: str | None = None) -> list[HistoryStep]:
    """The prompt history of an episode's earlier ``steps``, oldest first: the one rule every caller uses
    (the agent loop, the semi-online rollout, the trainer rebuilding a step's prompt).

    Each step contributes the text it left in the dialogue (its ``patch`` when it was patched over, else
    its response) and the screenshot it was answered on (relative paths resolved against ``image_root``).
    """
    return [
        HistoryStep(
            response=step.patch if step.patch is not None else step.response,
            screenshot=step.observation.screenshot_source(image_root),
        )
        for step in steps
    ]


# --- System prompts ---------------------------------------------------------------------------------------

_MOBILE_ACTIONS = {
    "key": "Press a key on the device; `text` names it.",
    "click": "Tap the screen at `coordinate`.",
    "long_press": "Press and hold at `coordinate` for `time` seconds.",
    "swipe": "Move a finger from `coordinate` to `coordinate2`.",
    "type": "Type `text` into the focused input field.",
    "answer": "Give the answer `text` to the user's question.",
    "system_button": "Press the system button `button` (Back, Home, Menu, Enter).",
    "open": "Open the app named `text`.",
    "wait": "Wait `time` seconds for the screen to change.",
    "terminate": "End the task, reporting `status` (success or failure).",
}
_COMPUTER_ACTIONS = {
    "key": "Press the keys in `keys` together, in order (a hotkey such as ctrl+c).",
    "type": "Type the string `text`.",
    "mouse_move": "Move the pointer to `coordinate`.",
    "left_click": "Left-click at `coordinate`.",
    "left_click_drag": "Press at the pointer, drag to `coordinate`, release.",
    "right_click": "Right-click at `coordinate`.",
    "middle_click": "Middle-click at `coordinate`.",
    "double_click": "Double-click at `coordinate`.",
    "triple_click": "Triple-click at `coordinate`.",
    "scroll": "Scroll the mouse wheel by `pixels` (positive up, negative down).",
    "hscroll": "Scroll horizontally by `pixels` (positive right, negative left).",
    "wait": "Wait `time` seconds.",
    "terminate": "End the task, reporting `status` (success or failure).",
    "answer": "Give the answer `text` to the user's question.",
}


def tool_schema(fmt: str, width: int, height: int) -> dict[str, Any]:
    """The function declaration of the ``mobile_use`` / ``computer_use`` tool a tool-call format asks for.

    Args:
        fmt: A tool-call format of :class:`guiagent.actions.ActionSpaceConfig` (``qwen25vl_mobile``,
            ``qwen25vl_computer``, ``qwen3vl_mobile``, ``qwen3vl_computer``).
        width: Width of the image the model sees (after ``smart_resize``), in pixels; pixel formats state it.
        height: Height of that image.

    Returns:
        An OpenAI-style ``{"type": "function", "function": {...}}`` declaration.

    Raises:
        ValueError: ``fmt`` is not a tool-call format (a caller bug).
    """
    if fmt not in _TOOLS:
        raise ValueError(f"{fmt!r} is not a tool-call format; use one of {sorted(_TOOLS)}")
    tool, relative = _TOOLS[fmt]
    actions = _MOBILE_ACTIONS if tool == "mobile_use" else _COMPUTER_ACTIONS
    device = "a phone's touch screen" if tool == "mobile_use" else "a computer's mouse and keyboard"
    if relative:
        from guiagent.actions.formats import RELATIVE_SCALE  # the parser's scale: x_device = x / 1000 * width

        top = RELATIVE_SCALE - 1
        # Qwen3-VL's agent prompts state a 1000x1000 screen rather than the image's size.
        screen = (
            f"The screen's resolution is {RELATIVE_SCALE}x{RELATIVE_SCALE}: coordinates are relative to the "
            f"screen, integers from 0 to {top} on each axis (x from the left edge, y from the top edge; "
            f"(0, 0) is the top-left corner, ({top}, {top}) the bottom-right), whatever the screenshot's size. "
        )
        unit = f"point (0-{top} relative coordinates)"
    else:
        screen = (
            f"The screen's resolution is {width}x{height}; "
            "coordinates are pixels (x from the left edge, y from the top edge) of that screen. "
        )
        unit = "pixel"
    description = (
        f"Operate {device} by looking at screenshots. {screen}"
        "Point at the centre of the element you act on.\n"
        + "\n".join(f"* `{name}`: {text}" for name, text in actions.items())
    )
    properties: dict[str, Any] = {
        "action": {"description": "The action to perform.", "enum": list(actions), "type": "string"},
        "coordinate": {"description": f"(x, y): the {unit} the action starts at.", "type": "array"},
        "text": {"description": "Text for `type`, `key`, `open` or `answer`.", "type": "string"},
        "time": {"description": "Seconds for `long_press` and `wait`.", "type": "number"},
        "status": {"description": "Task status for `terminate`.", "enum": ["success", "failure"], "type": "string"},
    }
    if tool == "mobile_use":
        properties["coordinate2"] = {"description": "(x, y): where a `swipe` ends.", "type": "array"}
        properties["button"] = {
            "description": "Button for `system_button`.", "enum": ["Back", "Home", "Menu", "Enter"], "type": "string"
        }
    else:
        properties["keys"] = {"description": "Key names for `key`.", "type": "array"}
        properties["pixels"] = {"description": "Scroll amount for `scroll` / `hscroll`.", "type": "number"}
    return {
        "type": "function",
        "function": {
            "name": tool,
            "description": description,
            "parameters": {"properties": properties, "required": ["action"], "type": "object"},
        },
    }


def system_prompt(fmt: str, width: int, height: int) -> str:
    """The system message for an answer format (``ActionSpaceConfig.format``).

    Pixel formats (Qwen2.5-VL, UI-S1) state the model image's (``smart_resize``d) resolution
    ``width`` x ``height``; Qwen3-VL formats state relative 0-999 coordinates instead. The tool-call layout
    (``# Tools``, ``<tools>`` holding JSON declarations, answers in ``<tool_call>``) is the function-calling
    layout Qwen2.5 models were trained on; it is a protocol, so it is kept as is.

    Raises:
        ValueError: ``fmt`` is not an answer format (a caller bug).
    """
    if fmt == "uis1":
        schema = tool_schema("qwen25vl_mobile", width, height)["function"]["parameters"]
        return (
            "You are a GUI agent operating a phone. You see the current screenshot, whose resolution is "
            f"{width}x{height}, and the steps taken so far. Think about the next step inside <think></think>, "
            "then give exactly one action as a JSON object inside <action></action>. The action object follows "
            f"this schema:\n{json.dumps(schema, ensure_ascii=False)}"
        )
    tool = json.dumps(tool_schema(fmt, width, height), ensure_ascii=False)
    return (
        "You are a helpful assistant.\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{tool}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


# --- Messages ---------------------------------------------------------------------------------------------


def load_image(image: ImageInput, actions: ActionSpaceConfig, size: tuple[int, int] | None = None):
    """Decode ``image`` and resize it as the model will see it.

    Args:
        image: The screenshot.
        actions: The resize bounds.
        size: ``(resized_width, resized_height)`` already computed by ``qwen_vl_utils.smart_resize`` for this
            screenshot's size (a :class:`~guiagent.actions.ModelGeometry` handed to a device-side process,
            which must not import torch): the image is resized to it as ``qwen_vl_utils.fetch_image`` does
            (RGB, Pillow's default resampling). None calls ``fetch_image`` itself (it imports torch).

    Returns:
        An RGB ``PIL.Image`` of size ``actions.geometry(...)``'s resized size (sides multiples of ``factor``).
    """
    from PIL import Image

    if isinstance(image, str) and image.startswith(("http://", "https://")):
        # Screenshots come from devices and stores, never from the network: refuse rather than download.
        raise PolicyError(f"remote image URLs are not accepted: {image[:80]}")
    try:
        if isinstance(image, (bytes, bytearray)):
            image = Image.open(io.BytesIO(image))
        if size is not None:
            if isinstance(image, str):
                image = Image.open(image)
            if image.mode == "RGBA":  # transparent pixels count as white, as fetch_image reads them
                image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
            return image.convert("RGB").resize(size)
        from qwen_vl_utils import fetch_image

        return fetch_image(
            {"image": image, "min_pixels": actions.min_pixels, "max_pixels": actions.max_pixels},
            image_patch_size=actions.factor // 2,
        )
    except (OSError, ValueError) as exc:  # unreadable file, not an image, truncated bytes
        what = image[:80] if isinstance(image, str) else type(image).__name__
        raise PolicyError(f"cannot read screenshot {what}: {exc}") from exc


def build_messages(
    instruction: str,
    screenshot: ImageInput,
    history: Sequence[HistoryStep] = (),
    config: PromptConfig = PromptConfig(),
    size: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Chat messages for one policy step: system prompt, history window, current screenshot.

    Images in the returned messages are already decoded and resized (``{"type": "image", "image": PIL}``),
    so both backends (local and vLLM) feed the model exactly the same pixels.

    Args:
        instruction: The task's instruction.
        screenshot: The current screenshot.
        history: Previous steps, oldest first.
        config: Answer format, resize bounds and window sizes.
        size: The model image size of this device's screenshots when already known (see :func:`load_image`).

    Returns:
        OpenAI/Qwen-style messages: ``[{"role": ..., "content": str | [parts]}, ...]``.

    Raises:
        PolicyError: an image-window step has no screenshot.
    """
    current = load_image(screenshot, config.actions, size)
    width, height = current.size
    n_image_steps = min(config.history_images - 1, len(history))
    text_steps = list(history[: len(history) - n_image_steps])
    image_steps = list(history[len(history) - n_image_steps :])
    dropped = max(0, len(text_steps) - config.history_text_steps)
    text_steps = text_steps[dropped:]

    lines = [f"The user query: {instruction}"]
    if text_steps or dropped:
        lines.append("Previous actions:")
        if dropped:
            lines.append(f"({dropped} earlier steps omitted)")
        for i, step in enumerate(text_steps, start=dropped + 1):
            lines.append(f"Step {i}: {step.summary if step.summary is not None else step.response}")
    intro = "\n".join(lines)

    system = system_prompt(config.actions.format, width, height)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for i, step in enumerate(image_steps):
        if step.screenshot is None:
            raise PolicyError(
                f"history step {len(history) - n_image_steps + i + 1} is inside the image window "
                f"(history_images={config.history_images}) but has no screenshot"
            )
        image = load_image(step.screenshot, config.actions, size)
        parts: list[dict[str, Any]] = [{"type": "image", "image": image}]
        if i == 0:
            parts.insert(0, {"type": "text", "text": intro})
        messages.append({"role": "user", "content": parts})
        messages.append({"role": "assistant", "content": step.response})
    parts = [{"type": "image", "image": current}]
    if not image_steps:
        parts.insert(0, {"type": "text", "text": intro})
    messages.append({"role": "user", "content": parts})
    return messages


# --- Hi-Agent roles (arXiv 2510.14388) ----------------------------------------------------------------------
# The planner writes a subgoal (<reasoning>...</reasoning><instruction>...</instruction>) from the task, the
# earlier steps as text and the screen; the executor maps the screen and the subgoal to one action in the
# action space's format. guiagent.rollout.hierarchical samples both; step_messages rebuilds either prompt.


def high_level_system_prompt(fmt: str) -> str:
    """The planner's system message; ``fmt`` (the low level's answer format) says which device it drives."""
    device = "a computer" if "computer" in fmt else "a phone"
    return (
        f"You are the planner of a GUI agent operating {device}. You see the user's task, the actions taken "
        "so far and the current screenshot. Decide the single next step. First think about it inside "
        "<reasoning></reasoning>, then write one short, concrete instruction for the executor inside "
        "<instruction></instruction>. The executor sees only the screenshot and your instruction and performs "
        "exactly one action: tap, long press, swipe, type text, press a button or key, open an app, wait, "
        "answer, or finish the task.\nExample: <reasoning>The Settings list is open and Wi-Fi is off.</reasoning>"
        "<instruction>Tap the Wi-Fi switch.</instruction>"
    )


def high_level_messages(
    instruction: str,
    screenshot: ImageInput,
    previous_actions: Sequence[str],
    prompt: PromptConfig,
    size: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Chat messages of the high level: its system prompt, the task, previous actions as text, the screen.

    Args:
        instruction: The task's instruction.
        screenshot: The current screenshot (bytes, path, PIL image).
        previous_actions: One line per earlier step, oldest first (:func:`previous_action_lines`); the newest
            ``prompt.history_text_steps`` are shown.
        prompt: Resize bounds and text-history window (images of earlier steps are never shown here).
        size: The model image size when already known (see :func:`guiagent.policy.prompts.load_image`).
    """
    history = [HistoryStep(response=line) for line in previous_actions]
    text_only = prompt.model_copy(update={"history_images": 1})
    messages = build_messages(instruction, screenshot, history, text_only, size)
    return [{"role": "system", "content": high_level_system_prompt(prompt.actions.format)}, *messages[1:]]


def low_level_messages(
    subgoal: str, screenshot: ImageInput, prompt: PromptConfig, size: tuple[int, int] | None = None
) -> list[dict[str, Any]]:
    """Chat messages of the low level: the action-format system prompt, the subgoal as the query, the screen."""
    return build_messages(subgoal, screenshot, (), prompt, size)


def step_messages(
    trajectory: Trajectory, t: int, prompt: PromptConfig, image_root: str | None = None
) -> list[dict[str, Any]]:
    """The messages step ``t`` of ``trajectory`` was sampled from, rebuilt (for the update's re-scoring).

    The agent prompt (instruction, :func:`history_from_steps` of the earlier steps, the screen) for every
    rollout kind, except Hi-Agent samples (``trajectory.info["level"]``), whose step records its planner input
    (``info["previous_actions"]``) or its executor's subgoal (``info["subgoal"]``).
    """
    step = trajectory.steps[t]
    screen = step.observation.screenshot_source(image_root)
    instruction = trajectory.instruction or step.observation.instruction or ""
    level = trajectory.info.get("level")
    if level == "high":
        return high_level_messages(instruction, screen, step.info["previous_actions"], prompt)
    if level == "low":
        return low_level_messages(step.info["subgoal"], screen, prompt)
    return build_messages(instruction, screen, history_from_steps(trajectory.steps[:t], image_root), prompt)


def message_images(messages: Sequence[dict[str, Any]]) -> list[Any]:
    """The images of ``messages`` in prompt order (the order the chat template places their tokens)."""
    return [
        part.get("image", part.get("image_url"))
        for message in messages
        if not isinstance(message["content"], str)
        for part in message["content"]
        if part.get("type") in ("image", "image_url")
    ]


@dataclass(frozen=True)
class EncodedPrompt:
    """A prompt tokenised with its images, ready for the model.

    Attributes:
        text: The chat-template text (image placeholders not yet expanded).
        inputs: The processor's output: ``input_ids`` (1, L), ``attention_mask`` (1, L), ``pixel_values``
            (P, C*T*14*14), ``image_grid_thw`` (n_images, 3), ``mm_token_type_ids`` (1, L) ...
        n_images: Number of images in the prompt.
        n_image_tokens: Number of ``<|image_pad|>`` tokens in ``input_ids``.
    """

    text: str
    inputs: Any
    n_images: int
    n_image_tokens: int


def render_prompt(processor: Any, messages: Sequence[dict[str, Any]]) -> str:
    """Chat-template text of ``messages`` with the generation prompt appended."""
    return processor.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def check_image_tokens(processor: Any, input_ids: Any, image_grid_thw: Any, images: Sequence[Any]) -> int:
    """Assert that the prompt's image tokens match its images; returns the number of image tokens.

    Each image of grid (t, h, w) needs ``t*h*w / merge**2`` ``<|image_pad|>`` tokens. A mismatch means the
    prompt was truncated or an image was resized behind our back (e.g. the processor's own max_pixels is
    smaller than the prompt's), which would silently corrupt coordinates.

    Raises:
        PolicyError: the counts differ or an image's grid is not the size it was resized to.
    """
    merge = processor.image_processor.merge_size
    patch = processor.image_processor.patch_size
    image_token_id = processor.image_token_id
    grid = image_grid_thw.tolist() if image_grid_thw is not None else []
    found = int((input_ids == image_token_id).sum())
    expected = sum(int(t * h * w) // merge**2 for t, h, w in grid)
    if found != expected:
        raise PolicyError(f"prompt holds {found} image tokens but its {len(images)} images need {expected}")
    if len(grid) != len(images):
        raise PolicyError(f"the processor returned {len(grid)} image grids for {len(images)} images")
    for i, ((_, h, w), image) in enumerate(zip(grid, images)):
        if (w * patch, h * patch) != tuple(image.size):
            raise PolicyError(
                f"image {i} was resized by the processor from {image.size[0]}x{image.size[1]} to "
                f"{w * patch}x{h * patch}: its min/max pixels differ from the prompt's, so the stated "
                "resolution would be wrong"
            )
    return found


def encode_prompt(processor: Any, messages: Sequence[dict[str, Any]]) -> EncodedPrompt:
    """Tokenise ``messages`` (from :func:`build_messages`) with the model's processor and chat template.

    Raises:
        PolicyError: the image tokens do not match the images (see :func:`check_image_tokens`).
    """
    text = render_prompt(processor, messages)
    images = message_images(messages)
    inputs = processor(text=[text], images=images or None, return_tensors="pt")
    n_tokens = check_image_tokens(processor, inputs["input_ids"], inputs.get("image_grid_thw"), images)
    return EncodedPrompt(text=text, inputs=inputs, n_images=len(images), n_image_tokens=n_tokens)
