"""Memory judges for HAR's r_memory: does the agent's reasoning use its interaction history?

HAR (arXiv 2511.09127) rewards reasoning that analyses the previous interactions; the paper asks a large
LLM (Qwen3-235B) to judge it. A judge here is anything with
``judge(reasoning, history) -> bool`` (:class:`MemoryJudge`):

* :class:`RuleMemoryJudge`: deterministic, for tests and cheap runs (definition on the class);
* :class:`LLMMemoryJudge`: any OpenAI-compatible chat-completions server (vLLM, an API), with a timeout,
  bounded retries and a strict yes/no answer.

:func:`build_memory_judge` makes the one a config names (``RewardConfig.memory_judge``).

The judge runs before the reward, which stays a pure function of its inputs
(:func:`guiagent.rewards.har.har_reward`): :func:`with_memory_verdicts` fills ``RewardInput.memory_used``
for a batch.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, runtime_checkable

from guiagent.errors import PolicyError, PolicyTimeout
from guiagent.rewards.matching import normalize_answer
from guiagent.rewards.registry import LLMJudgeConfig, MemoryJudgeConfig
from guiagent.rewards.sample import RewardInput


@runtime_checkable
class MemoryJudge(Protocol):
    """Decides whether ``reasoning`` uses ``history`` (short action summaries, oldest first)."""

    def judge(self, reasoning: str, history: Sequence[str]) -> bool: ...


# Function words that never make a history reference on their own.
_STOPWORDS = frozenset(
    [
        "i",
        "me",
        "my",
        "we",
        "our",
        "you",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "is",
        "am",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "do",
        "does",
        "did",
        "done",
        "to",
        "of",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "into",
        "onto",
        "as",
        "and",
        "or",
        "but",
        "so",
        "then",
        "now",
        "next",
        "also",
        "will",
        "would",
        "should",
        "can",
        "could",
        "need",
        "needs",
        "have",
        "has",
        "had",
        "not",
        "no",
        "yes",
        "there",
        "here",
        "which",
        "what",
        "where",
        "when",
    ]
)


class RuleMemoryJudge:
    """A deterministic memory judge.

    Definition: normalise the reasoning and each of the last ``k`` history summaries with SQuAD's
    :func:`~guiagent.rewards.matching.normalize_answer` (lower case, no punctuation, no articles) and split
    them into tokens. The reasoning *uses the history* iff, for some of those summaries, some run of
    ``min_ngram`` consecutive summary tokens that contains at least one non-function word (not in a fixed
    English stop-word list) also occurs as consecutive tokens of the reasoning. A summary shorter than
    ``min_ngram`` tokens must occur whole. With no history, nothing can be used: the answer is False.

    Example: history ``["Clicked the Settings icon"]`` → tokens ``clicked settings icon``; the reasoning
    "I already clicked Settings, so now ..." contains the bigram ``clicked settings`` → True.
    """

    def __init__(self, k: int = 4, min_ngram: int = 2):
        if k < 1 or min_ngram < 1:
            raise ValueError(f"k and min_ngram must be >= 1, got k={k}, min_ngram={min_ngram}")
        self.k = k
        self.min_ngram = min_ngram

    def judge(self, reasoning: str, history: Sequence[str]) -> bool:
        words = normalize_answer(reasoning).split()
        for summary in list(history)[-self.k :]:
            tokens = normalize_answer(summary).split()
            n = min(self.min_ngram, len(tokens))
            if n == 0:
                continue
            grams = {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
            for i in range(len(tokens) - n + 1):
                gram = tuple(tokens[i : i + n])
                if gram in grams and any(t not in _STOPWORDS for t in gram):
                    return True
        return False


_SYSTEM_PROMPT = (
    "You check whether a GUI agent's reasoning uses its interaction history. The history lists the agent's "
    "previous actions. Answer with exactly one word: yes if the reasoning explicitly takes one or more of "
    "the previous actions into account, no otherwise."
)


class _MalformedAnswer(Exception):
    pass


def parse_yes_no(text: str | None) -> bool:
    """Strict yes/no: after trimming, lower-casing and dropping a final ``.`` or ``!``, exactly "yes" or "no".

    Raises:
        ValueError: anything else (including an empty answer).
    """
    answer = (text or "").strip().lower().rstrip(".!").strip()
    if answer == "yes":
        return True
    if answer == "no":
        return False
    raise ValueError(f"the judge must answer 'yes' or 'no', got {text!r}")


class LLMMemoryJudge:
    """Memory judge backed by an OpenAI-compatible chat-completions server.

    Every request has ``config.timeout_s``; failures that may pass (timeouts, connection errors, HTTP 429 and
    5xx, answers other than yes/no) are retried at most ``config.max_retries`` times, then raised as
    :class:`~guiagent.errors.PolicyTimeout` (the last failure was a timeout) or
    :class:`~guiagent.errors.PolicyError`, ``from`` the last error. Other HTTP errors (400, 401, 404) are
    raised at once. ``calls`` and ``retries`` count requests for metrics.
    """

    def __init__(self, config: LLMJudgeConfig, api_key: str | None = None):
        import openai  # deferred: the SDK is only needed when an LLM judge is configured

        self.config = config
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=config.base_url,
            api_key=api_key or os.environ.get(config.api_key_env) or "EMPTY",
            timeout=config.timeout_s,
            max_retries=0,  # retries are ours: bounded, counted, typed
        )
        self.calls = 0
        self.retries = 0
        self._count_lock = threading.Lock()  # with_memory_verdicts judges on several threads

    def _messages(self, reasoning: str, history: Sequence[str]) -> list[dict[str, str]]:
        recent = list(history)[-self.config.history_window :]
        listed = "\n".join(f"{i}. {s}" for i, s in enumerate(recent, 1)) or "(no previous actions)"
        user = f"Previous actions, oldest first:\n{listed}\n\nReasoning:\n{reasoning}\n\nDoes the reasoning use the previous actions? Answer yes or no."
        return [{"role": "system", "content": _SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def _ask(self, messages: list[dict[str, str]]) -> bool:
        with self._count_lock:
            self.calls += 1
        response = self._client.chat.completions.create(
            model=self.config.model, messages=messages, temperature=0.0, max_tokens=8
        )
        try:
            return parse_yes_no(response.choices[0].message.content if response.choices else None)
        except ValueError as exc:
            raise _MalformedAnswer(str(exc)) from None

    def judge(self, reasoning: str, history: Sequence[str]) -> bool:
        """Ask the server whether ``reasoning`` uses ``history``.

        Raises:
            PolicyTimeout: the last of the bounded attempts timed out.
            PolicyError: the server failed or never answered yes/no within the attempts, or rejected the request.
        """
        openai = self._openai
        messages = self._messages(reasoning, history)
        last_error: Exception | None = None
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                with self._count_lock:
                    self.retries += 1
                time.sleep(self.config.retry_backoff_s * attempt)
            try:
                return self._ask(messages)
            except (
                _MalformedAnswer,
                openai.APIConnectionError,
                openai.RateLimitError,
                openai.InternalServerError,
            ) as exc:
                last_error = exc  # APITimeoutError is an APIConnectionError
            except openai.APIStatusError as exc:
                raise PolicyError(
                    f"memory judge at {self.config.base_url} rejected the request: {exc}"
                ) from exc
        attempts = self.config.max_retries + 1
        if isinstance(last_error, openai.APITimeoutError):
            raise PolicyTimeout(
                f"memory judge at {self.config.base_url} timed out after {attempts} attempt(s) of {self.config.timeout_s}s"
            ) from last_error
        raise PolicyError(
            f"memory judge at {self.config.base_url} failed after {attempts} attempt(s): {last_error}"
        ) from last_error


def with_memory_verdicts(
    samples: Sequence[RewardInput], judge: MemoryJudge, *, max_workers: int = 8
) -> list[RewardInput]:
    """The samples with ``memory_used`` filled in by ``judge``, ready for the ``har`` reward.

    Samples whose response did not parse or has no reasoning get False without asking the judge: HAR's
    format gate zeroes their reward anyway, and an LLM judge call costs time. The other samples are judged
    on ``max_workers`` threads (LLM judges wait on HTTP), results in input order.

    Raises:
        Whatever the judge raises (an LLM judge: PolicyTimeout / PolicyError after its bounded retries).
    """
    todo = [i for i, s in enumerate(samples) if s.action is not None and s.think]
    verdicts = [False] * len(samples)
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(todo)))) as pool:
            found = pool.map(lambda i: judge.judge(samples[i].think, samples[i].history), todo)
            for i, verdict in zip(todo, found, strict=True):
                verdicts[i] = bool(verdict)
    return [dataclasses.replace(s, memory_used=v) for s, v in zip(samples, verdicts, strict=True)]


def build_memory_judge(config: MemoryJudgeConfig) -> MemoryJudge:
    """The judge ``config`` names: a :class:`RuleMemoryJudge` or an :class:`LLMMemoryJudge`."""
    if config.kind == "llm":
        return LLMMemoryJudge(config.llm)
    return RuleMemoryJudge(k=config.k, min_ngram=config.min_ngram)
