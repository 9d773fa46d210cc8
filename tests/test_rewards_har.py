"""HAR history-aware reward (arXiv 2511.09127) and its memory judges.

The LLM judge is exercised through the real OpenAI SDK against a real local HTTP server that speaks the
chat-completions JSON (a fake of the LLM, not of the client).
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from guiagent.errors import PolicyError, PolicyTimeout
from guiagent.rewards import (
    HarConfig,
    LLMJudgeConfig,
    LLMMemoryJudge,
    MemoryJudge,
    MemoryJudgeConfig,
    RewardConfig,
    Rewarder,
    RewardInput,
    RuleMemoryJudge,
    build_memory_judge,
    get_reward,
    har_action_reward,
    har_reward,
    with_memory_verdicts,
)
from guiagent.types import Action
from tests.test_rewards_matching import actions, boxes, screens

SCREEN = (1000, 1000)
BOX = (100.0, 200.0, 200.0, 300.0)  # centre (150, 250)
CLICK = Action.click(150, 250)
CFG = HarConfig()  # gamma 0.2, precision scale 100 px, miss credit 0.5, hit threshold 0.04


# --- r_action ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pred, box, expected",
    [
        (Action.click(150, 250), BOX, 2.0),  # centre: hit, 1 + exp(0)
        (Action.click(180, 290), BOX, 1 + math.exp(-0.5)),  # d = hypot(30, 40) = 50 -> 1.6065
        (Action.click(200, 300), BOX, 1 + math.exp(-math.hypot(50, 50) / 100)),  # corner is inside
        (Action.click(250, 250), BOX, 0.5 * math.exp(-1.0)),  # miss, d = 100 -> 0.1839
        (Action.long_press(150, 250), BOX, 0.0),  # wrong type
        (None, BOX, 0.0),
        # Without a box: hit iff within 0.04 normalised of the expert point.
        (Action.click(180, 250), None, 1 + math.exp(-0.3)),  # 0.03 -> hit, d = 30 px
        (Action.click(200, 250), None, 0.5 * math.exp(-0.5)),  # 0.05 -> miss, d = 50 px
    ],
)
def test_har_click_reward_is_distance_graded(pred, box, expected):
    assert har_action_reward(pred, CLICK, box, SCREEN, CFG) == pytest.approx(expected)


def test_har_non_click_uses_the_uis1_match():
    assert har_action_reward(Action.type_text("milk"), Action.type_text("Milk"), None, SCREEN, CFG) == 1.0
    assert har_action_reward(Action.type_text("eggs"), Action.type_text("Milk"), None, SCREEN, CFG) == 0.0
    assert (
        har_action_reward(Action.scroll("down"), Action.swipe((5, 900), (5, 100)), None, SCREEN, CFG) == 1.0
    )


def test_har_reward_with_and_without_memory_and_format():
    # r = fmt (r_action + 0.2 r_memory)
    assert har_reward(True, 2.0, True) == pytest.approx(2.2)
    assert har_reward(True, 2.0, False) == pytest.approx(2.0)
    assert har_reward(True, 0.0, True) == pytest.approx(0.2)  # wrong action, history used
    assert har_reward(False, 2.0, True) == 0.0  # a format failure zeroes everything


def test_registered_har_reward():
    fn = get_reward("har")
    base = {"response": "", "screen_size": SCREEN, "expert": CLICK, "expert_box": BOX}
    hit = RewardInput(
        action=Action.click(150, 250), think="as I opened the menu before", memory_used=True, **base
    )
    assert fn(hit) == pytest.approx(2.2)
    assert fn(
        RewardInput(action=Action.click(150, 250), think="t", memory_used=False, **base)
    ) == pytest.approx(2.0)
    # Parse failure: fmt = 0 -> 0, even with memory credit.
    assert fn(RewardInput(action=None, think="I already typed it", memory_used=True, **base)) == 0.0
    # No reasoning block: fmt = 0 (unless the config says the format has none).
    no_think = RewardInput(action=Action.click(150, 250), think=None, memory_used=True, **base)
    assert fn(no_think) == 0.0
    assert fn(no_think, config={"require_think": False}) == pytest.approx(2.2)
    with pytest.raises(ValueError, match="memory_used"):
        fn(RewardInput(action=CLICK, think="t", **base))


@settings(max_examples=300, deadline=None)
@given(
    pred=st.one_of(st.none(), actions()),
    expert=actions(),
    box=st.one_of(st.none(), boxes()),
    screen=screens,
    fmt=st.booleans(),
    memory=st.booleans(),
)
def test_har_is_finite_and_in_range(pred, expert, box, screen, fmt, memory):
    r_action = har_action_reward(pred, expert, box, screen, CFG)
    assert 0.0 <= r_action <= 2.0
    r = har_reward(fmt and pred is not None, r_action, memory, CFG.gamma)
    assert math.isfinite(r) and 0.0 <= r <= 2.0 + CFG.gamma


# --- the rule memory judge --------------------------------------------------------------------------------


def test_rule_memory_judge_definition():
    judge = RuleMemoryJudge(k=2, min_ngram=2)
    assert isinstance(judge, MemoryJudge)
    history = ["Opened the Settings app", "Clicked the Wi-Fi toggle", "Scrolled down the list"]
    # Normalisation drops punctuation ("Wi-Fi" -> "wifi"): summary 2 is [clicked, wifi, toggle] and the
    # reasoning contains the bigram "clicked wifi".
    assert judge.judge("I clicked the Wi-Fi toggle already, now go back.", history)
    assert judge.judge("After I scrolled down the list, the option shows.", history)
    # The oldest summary is outside the last k = 2: "opened settings" does not count.
    assert not judge.judge("I opened settings app", history)
    # Shared function words only ("the list" -> "list" alone is one token, not a bigram of content).
    assert not judge.judge("Tap the search box to find it.", history)
    assert not judge.judge("anything", [])  # no history, nothing to use
    # A one-word summary must occur whole.
    assert RuleMemoryJudge(min_ngram=2).judge("I pressed Back before", ["back"])


@settings(max_examples=200, deadline=None)
@given(reasoning=st.text(max_size=200), history=st.lists(st.text(max_size=60), max_size=6))
def test_rule_memory_judge_never_raises(reasoning, history):
    assert isinstance(RuleMemoryJudge().judge(reasoning, history), bool)


# --- the LLM memory judge against a real local HTTP server -----------------------------------------------


class FakeLLM:
    """Scripted chat-completions server: each request pops the next (status, answer, delay) from ``script``."""

    def __init__(self, script):
        self.script = list(script)
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "body": body})
                status, answer, delay = fake.script.pop(0) if fake.script else (200, "no", 0.0)
                time.sleep(delay)
                payload = (
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": answer},
                            }
                        ],
                    }
                    if status == 200
                    else {"error": {"message": answer, "type": "server_error"}}
                )
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def fake_llm():
    servers: list[FakeLLM] = []

    def start(script):
        server = FakeLLM(script)
        server.thread.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.server.shutdown()
            server.server.server_close()
            server.thread.join(timeout=5)


def make_judge(server: FakeLLM, **overrides) -> LLMMemoryJudge:
    cfg = LLMJudgeConfig(base_url=server.base_url, model="judge", retry_backoff_s=0.0, **overrides)
    return LLMMemoryJudge(cfg, api_key="test-key")


def test_llm_judge_parses_yes_and_no(fake_llm):
    server = fake_llm([(200, "Yes", 0.0), (200, " no. ", 0.0)])
    judge = make_judge(server)
    assert isinstance(judge, MemoryJudge)
    history = [f"step {i}" for i in range(6)]
    assert judge.judge("I already opened the menu", history) is True
    assert judge.judge("Tap search", history) is False
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["body"]["model"] == "judge"
    prompt = request["body"]["messages"][-1]["content"]
    assert "step 5" in prompt and "step 2" in prompt and "step 1" not in prompt  # last 4 summaries only
    assert judge.calls == 2 and judge.retries == 0


def test_llm_judge_retries_server_errors_and_malformed_answers(fake_llm):
    server = fake_llm([(500, "overloaded", 0.0), (200, "Maybe?", 0.0), (200, "yes", 0.0)])
    judge = make_judge(server, max_retries=2)
    assert judge.judge("r", ["h"]) is True
    assert len(server.requests) == 3 and judge.retries == 2


def test_llm_judge_gives_up_with_policy_error_from_the_last_error(fake_llm):
    server = fake_llm([(200, "yes, it does", 0.0)] * 3)
    judge = make_judge(server, max_retries=1)
    with pytest.raises(PolicyError, match="2 attempt") as info:
        judge.judge("r", ["h"])
    assert "yes" in str(info.value.__cause__)
    assert len(server.requests) == 2  # bounded: 1 + max_retries


def test_llm_judge_client_errors_are_not_retried(fake_llm):
    server = fake_llm([(404, "no such model", 0.0)])
    with pytest.raises(PolicyError, match="rejected"):
        make_judge(server, max_retries=3).judge("r", ["h"])
    assert len(server.requests) == 1


def test_llm_judge_timeout_raises_policy_timeout(fake_llm):
    server = fake_llm([(200, "yes", 1.5), (200, "yes", 1.5)])
    judge = make_judge(server, timeout_s=0.3, max_retries=1)
    start = time.monotonic()
    with pytest.raises(PolicyTimeout):
        judge.judge("r", ["h"])
    assert time.monotonic() - start < 3.0  # two 0.3 s attempts, not two 1.5 s answers


def test_with_memory_verdicts_asks_only_for_parsed_reasoned_samples(fake_llm):
    server = fake_llm([(200, "yes", 0.0), (200, "yes", 0.0)])
    judge = make_judge(server)
    base = {
        "response": "",
        "screen_size": SCREEN,
        "expert": CLICK,
        "expert_box": BOX,
        "history": ("Opened menu",),
    }
    samples = [
        RewardInput(action=CLICK, think="I opened the menu", **base),
        RewardInput(action=None, think="I opened the menu", **base),  # parse failure: not asked
        RewardInput(action=CLICK, think=None, **base),  # no reasoning: not asked
        RewardInput(action=CLICK, think="menu is open", **base),
    ]
    judged = with_memory_verdicts(samples, judge, max_workers=2)
    assert [s.memory_used for s in judged] == [True, False, False, True]
    assert len(server.requests) == 2
    assert [get_reward("har")(s) for s in judged] == pytest.approx([2.2, 0.0, 0.0, 2.2])


# --- HAR by config: RewardConfig names the judge, a Rewarder runs it before the reward ----------------------


def test_a_reward_config_builds_the_judge_it_names():
    rule = build_memory_judge(MemoryJudgeConfig(kind="rule", k=2, min_ngram=3))
    assert isinstance(rule, RuleMemoryJudge) and (rule.k, rule.min_ngram) == (2, 3)
    llm = build_memory_judge(MemoryJudgeConfig(kind="llm", llm={"base_url": "http://127.0.0.1:9/v1", "model": "j"}))
    assert isinstance(llm, LLMMemoryJudge) and llm.config.model == "j"
    with pytest.raises(ValidationError, match="llm exactly when kind is 'llm'"):
        MemoryJudgeConfig(kind="llm")


def test_rewarder_asks_the_configured_llm_judge_then_scores_har(fake_llm):
    server = fake_llm([(200, "yes", 0.0)])
    llm = {"base_url": server.base_url, "model": "judge", "retry_backoff_s": 0.0}
    rewarder = Rewarder(RewardConfig(name="har", memory_judge={"kind": "llm", "llm": llm}))
    base = {"response": "r", "action": CLICK, "screen_size": SCREEN, "expert": CLICK, "expert_box": BOX,
            "history": ("opened menu",)}
    # Reasoned click on the box centre: 1 × (1 + exp(0) + 0.2 · yes) = 2.2. No reasoning block: fmt 0 → 0,
    # and the judge is not asked about it.
    scores = rewarder.score([RewardInput(think="I opened the menu", **base), RewardInput(think=None, **base)])
    assert scores == pytest.approx([2.2, 0.0])
    assert len(server.requests) == 1 and rewarder.judge.calls == 1
