"""`guiagent eval ... --model`: a real (tiny, random) Qwen2.5-VL through guiagent.policy's local backend."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from guiagent.actions import ActionSpaceConfig
from guiagent.data import samples
from guiagent.data.convert import convert
from guiagent.data.store import iter_episodes
from guiagent.eval.model import PolicyPredictor
from guiagent.policy.base import Generation
from guiagent.types import Observation


class RecordingPolicy:
    """Answers a fixed text and keeps the requests it got (the Policy interface)."""

    def __init__(self, text: str = "<action>{}</action>"):
        self.text = text
        self.requests = []

    def generate(self, requests, sampling):
        self.requests.extend(requests)
        assert sampling.greedy
        return [
            Generation(
                text=self.text,
                token_ids=(1,),
                logprobs=(0.0,),
                finish_reason="stop",
                prompt_tokens=1,
            )
            for _ in requests
        ]


def _texts(messages):
    out = []
    for m in messages:
        content = m["content"]
        parts = [content] if isinstance(content, str) else [p.get("text", "") for p in content]
        out.extend(parts)
    return "\n".join(out)


def test_predictor_prompt_holds_goal_step_instruction_and_own_history(tmp_path):
    from PIL import Image

    Image.new("RGB", (108, 240), "white").save(tmp_path / "s.png")
    policy = RecordingPolicy()
    predictor = PolicyPredictor(policy, ActionSpaceConfig(format="uis1"), max_tokens=8)
    obs = Observation(
        108,
        240,
        screenshot_path=str(tmp_path / "s.png"),
        instruction="Set an alarm",
        extras={"step_instruction": "tap the plus button"},
    )
    assert predictor.predict(obs, ('<action>{"action": "wait"}</action>',)) == "<action>{}</action>"
    text = _texts(policy.requests[0].messages)
    assert "Set an alarm" in text and "Current step: tap the plus button" in text
    assert '"action": "wait"' in text  # the model's own earlier answer is in the prompt
    high = Observation(108, 240, screenshot_path=str(tmp_path / "s.png"), instruction="Set an alarm")
    predictor.predict(high, ())
    assert "Current step" not in _texts(policy.requests[1].messages)


def test_qwen3vl_predictor_prompt_states_relative_coordinates_and_its_answer_parses_back(tmp_path):
    from PIL import Image

    from guiagent.actions import format_action, parse_action
    from guiagent.policy.prompts import message_images
    from guiagent.types import Action

    Image.new("RGB", (108, 240), "white").save(tmp_path / "s.png")
    space = ActionSpaceConfig(format="qwen3vl_mobile", factor=32)
    geometry = space.geometry(108, 240)
    answer = format_action(Action.click(54, 60), space.format, geometry)
    policy = RecordingPolicy(answer)
    obs = Observation(108, 240, screenshot_path=str(tmp_path / "s.png"), instruction="Set an alarm")
    text = PolicyPredictor(policy, space).predict(obs, ())
    messages = policy.requests[0].messages
    assert "integers from 0 to 999" in messages[0]["content"] and '"name": "mobile_use"' in messages[0]["content"]
    assert "108x240" not in messages[0]["content"]  # no pixel resolution: Qwen3-VL answers relative
    image = message_images(messages)[0]
    assert image.size == (geometry.resized_width, geometry.resized_height) and image.size[0] % 32 == 0
    assert '"coordinate": [500, 250]' in text
    action = parse_action(text, space.format, geometry)
    assert action.point == pytest.approx((54, 60))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from guiagent.policy.tiny import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny") / "model")


def test_androidcontrol_sop_run_with_a_local_model(tmp_path, tiny_model):
    samples.write_androidcontrol_sample(tmp_path / "src", episodes=2, seed=3)
    store = tmp_path / "store"
    convert("androidcontrol", tmp_path / "src", store)
    lengths = {t.episode_id: len(t.steps) for t in iter_episodes(store)}
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "guiagent",
            "eval",
            "androidcontrol",
            str(store),
            "--model",
            str(tiny_model),
            "--out",
            str(out),
            "--level",
            "both",
            "--format",
            "uis1",
            "--max-tokens",
            "12",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    for level in ("high", "low"):
        for episode, n in lengths.items():
            steps = [r["step"] for r in records if r["episode_id"] == episode and r["level"] == level]
            # Each episode starts at step 0 and runs in order, at most its length (stops at a mismatch).
            assert steps == list(range(len(steps))) and 1 <= len(steps) <= n
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == str(tiny_model) and report["levels"] == ["high", "low"]
    assert report["metrics"]["high"]["sop"]["episodes"] == len(lengths)
    # Steps after an episode's first mismatch were never asked: they are the missing ones, per level.
    assert report["missing_predictions"] == 2 * sum(lengths.values()) - len(records)


def test_screenspot_run_with_a_local_model(tmp_path, tiny_model):
    samples.write_screenspot_sample(tmp_path / "src", "v1", per_platform=1)
    store = tmp_path / "store"
    convert("screenspot_v1", tmp_path / "src", store)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "guiagent",
            "eval",
            "screenspot",
            str(store),
            "--model",
            str(tiny_model),
            "--out",
            str(out),
            "--limit",
            "2",
            "--max-tokens",
            "12",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 2
    report = json.loads((out / "report.json").read_text())
    assert report["count"] == 3 and report["missing_predictions"] == 1
