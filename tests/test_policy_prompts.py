"""Prompts: stated resolution, history window rule, image-token accounting through the real processor."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from guiagent.actions import ActionSpaceConfig
from guiagent.errors import PolicyError
from guiagent.policy.prompts import (
    HistoryStep,
    PromptConfig,
    build_messages,
    encode_prompt,
    message_images,
    system_prompt,
    tool_schema,
)


@pytest.fixture(scope="module")
def processor(tiny_qwen25vl):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_qwen25vl)


def _user_text(messages) -> str:
    return "\n".join(p["text"] for m in messages if m["role"] == "user" and not isinstance(m["content"], str)
                     for p in m["content"] if p["type"] == "text")


def test_stated_resolution_is_the_smart_resized_one():
    config = PromptConfig(actions=ActionSpaceConfig(max_pixels=1280 * 28 * 28))
    screen = Image.new("RGB", (1080, 2400), "white")
    messages = build_messages("open settings", screen, [], config)
    # DESIGN machine notes: (2400, 1080) with max_pixels 1280*28*28 -> (1484, 672).
    assert "The screen's resolution is 672x1484" in messages[0]["content"]
    geometry = config.geometry(1080, 2400)
    assert (geometry.resized_width, geometry.resized_height) == (672, 1484)
    assert message_images(messages)[0].size == (672, 1484)


@pytest.mark.parametrize(
    ("fmt", "tool", "click"),
    [
        ("qwen25vl_mobile", "mobile_use", "click"),
        ("qwen25vl_computer", "computer_use", "left_click"),
        ("qwen3vl_mobile", "mobile_use", "click"),
        ("qwen3vl_computer", "computer_use", "left_click"),
    ],
)
def test_tool_prompt_declares_one_parseable_function(fmt, tool, click):
    prompt = system_prompt(fmt, 672, 1484)
    tools = prompt.split("<tools>\n")[1].split("\n</tools>")[0]
    declared = json.loads(tools)
    assert declared == tool_schema(fmt, 672, 1484)
    assert declared["function"]["name"] == tool
    assert click in declared["function"]["parameters"]["properties"]["action"]["enum"]
    assert "<tool_call>" in prompt


def test_uis1_prompt_asks_for_think_and_action():
    prompt = system_prompt("uis1", 672, 1484)
    assert "<think></think>" in prompt and "<action></action>" in prompt and "672x1484" in prompt


def test_history_window_images_responses_and_summaries(processor, policy_screenshots):
    shot = policy_screenshots[0]
    history = [HistoryStep(response=f"<tool_call>r{i}</tool_call>", summary=f"summary {i}", screenshot=shot)
               for i in range(5)]
    config = PromptConfig(history_images=3)
    messages = build_messages("find milk", policy_screenshots[1], history, config)
    # Current screen + the last 2 steps' screens as images; their responses as assistant turns.
    assert len(message_images(messages)) == 3
    assert [m["content"] for m in messages if m["role"] == "assistant"] == [
        "<tool_call>r3</tool_call>", "<tool_call>r4</tool_call>"]
    text = _user_text(messages)
    assert "The user query: find milk" in text
    assert [line for line in text.splitlines() if line.startswith("Step")] == [
        "Step 1: summary 0", "Step 2: summary 1", "Step 3: summary 2"]
    encoded = encode_prompt(processor, messages)
    assert encoded.n_images == 3
    per_image = (encoded.inputs["image_grid_thw"].prod(dim=1) // 4).tolist()
    assert encoded.n_image_tokens == sum(per_image) > 0
    ids = encoded.inputs["input_ids"][0].tolist()
    assert ids.count(processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")) == 3


def test_response_is_used_when_a_step_has_no_summary(policy_screenshots):
    messages = build_messages("x", policy_screenshots[0], [HistoryStep("clicked the button")], PromptConfig())
    assert "Step 1: clicked the button" in _user_text(messages)


def test_window_step_without_screenshot_is_an_error(policy_screenshots):
    with pytest.raises(PolicyError, match="no screenshot"):
        build_messages("x", policy_screenshots[0], [HistoryStep("r")], PromptConfig(history_images=2))


def test_processor_resizing_behind_the_prompts_back_is_caught(processor, policy_screenshots):
    from transformers import AutoProcessor

    # A processor whose max_pixels is smaller than the prompt's would shrink the image again, making the
    # resolution stated in the prompt wrong: encode_prompt must refuse.
    small = AutoProcessor.from_pretrained(
        processor.tokenizer.name_or_path, size={"longest_edge": 200 * 28 * 28, "shortest_edge": 56 * 56})
    config = PromptConfig(actions=ActionSpaceConfig(max_pixels=1280 * 28 * 28))
    messages = build_messages("x", policy_screenshots[2], [], config)
    with pytest.raises(PolicyError, match="resized by the processor"):
        encode_prompt(small, messages)


def test_unreadable_screenshots_are_policy_errors(tmp_path):
    with pytest.raises(PolicyError, match="cannot read screenshot"):
        build_messages("x", b"not an image", [], PromptConfig())
    with pytest.raises(PolicyError, match="missing.png"):
        build_messages("x", str(tmp_path / "missing.png"), [], PromptConfig())


def test_remote_image_urls_are_refused():
    with pytest.raises(PolicyError, match="remote image"):
        build_messages("x", "https://example.com/a.png", [], PromptConfig())


@settings(max_examples=40, deadline=None)
@given(n_history=st.integers(0, 12), k=st.integers(1, 5), text_steps=st.integers(0, 6))
def test_window_rule_never_drops_silently(n_history, k, text_steps):
    shot = Image.new("RGB", (56, 112), "gray")
    history = [HistoryStep(response=f"r{i}", summary=f"s{i}", screenshot=shot) for i in range(n_history)]
    messages = build_messages("t", shot, history, PromptConfig(history_images=k, history_text_steps=text_steps))
    n_image_steps = min(k - 1, n_history)
    older = n_history - n_image_steps
    dropped = max(0, older - text_steps)
    assert len(message_images(messages)) == n_image_steps + 1
    text = _user_text(messages)
    steps = [line for line in text.splitlines() if line.startswith("Step ")]
    assert steps == [f"Step {i + 1}: s{i}" for i in range(dropped, older)]
    # Every history step is accounted for: shown as image+response, as a text line, or counted as omitted.
    assert (f"({dropped} earlier steps omitted)" in text) == (dropped > 0)
    assert len(steps) + n_image_steps + dropped == n_history


TOOL_FORMATS = ["qwen25vl_mobile", "qwen25vl_computer", "qwen3vl_mobile", "qwen3vl_computer"]


@pytest.mark.parametrize("fmt", TOOL_FORMATS)
def test_tool_schema_covers_every_action_the_formatter_writes(fmt):
    """The prompt must offer every action name and argument the action formatter (and so the parser) uses."""
    from guiagent.actions import format_action
    from guiagent.errors import ActionError
    from guiagent.types import Action

    config = PromptConfig(actions=ActionSpaceConfig(format=fmt))
    geometry = config.geometry(1080, 2400)
    schema = tool_schema(fmt, geometry.resized_width, geometry.resized_height)["function"]["parameters"]
    actions = [Action.click(10, 20), Action.long_press(10, 20), Action.swipe((10, 20), (30, 40)),
               Action.type_text("hi"), Action.system_button("back"), Action.open_app("Maps"), Action.wait(2),
               Action.terminate("success"), Action.answer("42"), Action.scroll("down")]
    written = 0
    for action in actions:
        try:
            text = format_action(action, fmt, geometry)
        except ActionError:  # the format cannot express it (e.g. swipe in computer_use)
            continue
        arguments = json.loads(text.split("<tool_call>\n")[1].split("\n</tool_call>")[0])["arguments"]
        assert arguments["action"] in schema["properties"]["action"]["enum"], arguments
        assert set(arguments) <= set(schema["properties"]), arguments
        written += 1
    assert written >= 6


ALL_FORMATS = [*TOOL_FORMATS, "uis1"]


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize(("size", "max_pixels"), [((1080, 2400), 1280 * 28 * 28), ((1920, 1080), 12845056)])
def test_prompt_and_parser_share_one_geometry_for_every_format(fmt, size, max_pixels):
    """End to end: the image the prompt shows and the resolution it states are the parser's ModelGeometry, and
    an answer written in the model's space parses back onto the device point."""
    from guiagent.actions import format_action, parse_action
    from guiagent.types import Action

    factor = 32 if fmt.startswith("qwen3vl") else 28
    space = ActionSpaceConfig(format=fmt, factor=factor, max_pixels=max_pixels)
    config = PromptConfig(actions=space)
    messages = build_messages("open settings", Image.new("RGB", size, "white"), [], config)
    parser = space.geometry(*size)  # what guiagent.actions.parse_action is given for this screenshot
    assert config.geometry(*size) == parser
    assert message_images(messages)[0].size == (parser.resized_width, parser.resized_height)
    system = messages[0]["content"]
    stated = f"resolution is {parser.resized_width}x{parser.resized_height}"
    if fmt.startswith("qwen3vl"):
        assert "resolution is 1000x1000" in system and "integers from 0 to 999" in system
        assert stated not in system
    else:
        assert stated in system and "0 to 999" not in system
    target = (size[0] * 0.3, size[1] * 0.7)
    answer = format_action(Action.click(*target), fmt, parser)
    parsed = parse_action(answer, fmt, parser)
    step = max(parser.scale) if not fmt.startswith("qwen3vl") else max(size) / 1000
    assert parsed.point == pytest.approx(target, abs=step)


def test_qwen3vl_prompt_states_relative_coordinates_and_its_answer_parses_with_the_same_space():
    from guiagent.actions import ParseFailure, parse_action

    space = ActionSpaceConfig(format="qwen3vl_mobile", factor=32, max_pixels=1280 * 32 * 32)
    config = PromptConfig(actions=space)
    messages = build_messages("open settings", Image.new("RGB", (1080, 2400), "white"), [], config)
    tool = json.loads(messages[0]["content"].split("<tools>\n")[1].split("\n</tools>")[0])
    assert "integers from 0 to 999" in tool["function"]["description"]
    assert "0-999" in tool["function"]["parameters"]["properties"]["coordinate"]["description"]
    # What a Qwen3-VL model answers to that prompt: the screen's centre and its bottom-right corner.
    def click(x: int, y: int) -> str:
        call = {"name": "mobile_use", "arguments": {"action": "click", "coordinate": [x, y]}}
        return f"<tool_call>\n{json.dumps(call)}\n</tool_call>"

    geometry = config.geometry(1080, 2400)
    assert parse_action(click(500, 500), space.format, geometry).point == pytest.approx((540, 1200))
    corner = parse_action(click(999, 999), space.format, geometry)
    assert not isinstance(corner, ParseFailure) and geometry.on_screen(corner.point)
    # The same answer read as Qwen2.5-VL pixels would land elsewhere: the format really changes the mapping.
    assert parse_action(click(500, 500), "qwen25vl_mobile", geometry).point != pytest.approx((540, 1200))


def test_tool_schema_refuses_a_format_without_a_tool():
    with pytest.raises(ValueError, match="not a tool-call format"):
        tool_schema("uis1", 672, 1484)
