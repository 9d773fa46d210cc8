"""A client of vLLM's OpenAI-compatible server, with the same interface as the local backend.

Every call has a deadline: all of its attempts, back-off pauses included, end within ``deadline`` seconds
however the server behaves. httpx's own timeout bounds each network operation, not a request, so a server
that drips one byte a second would keep an httpx request alive forever; the deadline is enforced by running
each HTTP exchange as a coroutine on this client's event loop under ``asyncio.wait_for``, the way httpx's
maintainers recommend (encode/httpx#776, #1450).

Only what can succeed on a second try is retried: connection failures, network timeouts, a server that
dropped the connection, 429 and 5xx answers. An invalid URL or a 4xx is the request's fault and raises at
once; so does a reply that is not the JSON the call expects. Failures raise :class:`PolicyTimeout` /
:class:`PolicyError` naming the URL, from the last error. A thread pool bounds how many requests are in flight.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guiagent.errors import PolicyError, PolicyTimeout
from guiagent.policy.base import Generation, GenerationRequest, SamplingParams

# Failures where the same request may succeed later: the server was unreachable, slow, or dropped the connection.
# Other transport errors (an unsupported scheme, a malformed request) fail the same way every time.
RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def image_data_url(image: Any) -> str:
    """Encode an image (PIL image, encoded bytes, file path or data URL) as a ``data:`` URL.

    PIL images are sent as PNG so the server decodes exactly the pixels the local backend sees.
    """
    if isinstance(image, str) and image.startswith("data:image"):
        return image
    if isinstance(image, (str, Path)):
        data, mime = Path(image).read_bytes(), "image/png"
        if data[:3] == b"\xff\xd8\xff":
            mime = "image/jpeg"
    elif isinstance(image, (bytes, bytearray)):
        data, mime = bytes(image), "image/jpeg" if image[:3] == b"\xff\xd8\xff" else "image/png"
    else:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data, mime = buffer.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def openai_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Convert prompt messages (images as ``{"type": "image", "image": ...}``) to OpenAI chat format."""
    converted = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            content = [
                {"type": "image_url", "image_url": {"url": image_data_url(part.get("image", part.get("image_url")))}}
                if part.get("type") in ("image", "image_url")
                else {"type": "text", "text": part["text"]}
                for part in content
            ]
        converted.append({"role": message["role"], "content": content})
    return converted


class _Reply(BaseModel):
    # Strict: a number sent as a string or a bool sent as a number means a server we do not understand.
    model_config = ConfigDict(strict=True)


class _LogProb(_Reply):
    logprob: float


class _LogProbs(_Reply):
    content: list[_LogProb] | None = None


class _Message(_Reply):
    content: str | None = None


class _Choice(_Reply):
    message: _Message
    token_ids: list[int] | None = None  # vLLM's return_token_ids extension
    logprobs: _LogProbs | None = None
    finish_reason: str | None = None


class _Usage(_Reply):
    prompt_tokens: int


class ChatCompletion(_Reply):
    """The part of an OpenAI chat completion this client reads; a reply of another shape is an error."""

    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage
    model: str | None = None


class VLLMClient:
    """Generate through a vLLM OpenAI-compatible server.

    Args:
        base_url: Server root, e.g. ``http://127.0.0.1:8000`` (no ``/v1``).
        model: Default served model or adapter name (see ``GenerationRequest.model``).
        timeout: Seconds one network operation may wait (connecting, each read, each write).
        max_retries: Retries after the first attempt of a call (so at most ``1 + max_retries`` attempts).
        max_concurrency: Most requests in flight at once.
        backoff: Seconds before the first retry; doubles per retry.
        api_key: Sent as a bearer token when the server was started with ``--api-key``.
        deadline: Seconds one call may take in all, every attempt and back-off pause included, however slowly
            the server sends. Default: the retry budget, ``(1 + max_retries) * timeout`` plus the pauses.

    Raises:
        PolicyError: ``base_url`` is not an http(s) URL with a host, or a limit is out of range.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        timeout: float = 120.0,
        max_retries: int = 2,
        max_concurrency: int = 8,
        backoff: float = 0.5,
        api_key: str | None = None,
        deadline: float | None = None,
    ):
        if max_retries < 0 or max_concurrency < 1 or timeout <= 0 or (deadline is not None and deadline <= 0):
            raise PolicyError("max_retries must be >= 0, max_concurrency >= 1, timeout and deadline > 0")
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL as exc:
            raise PolicyError(f"invalid policy server URL {base_url!r}: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise PolicyError(f"invalid policy server URL {base_url!r}: want http(s)://HOST[:PORT]")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_retries = max_retries
        self.backoff = backoff
        self.deadline = deadline if deadline is not None else (
            (1 + max_retries) * timeout + backoff * (2 ** max_retries - 1))
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
        self._http = httpx.AsyncClient(timeout=timeout, headers=headers, limits=limits)
        # The HTTP exchanges run on this loop, so that asyncio.wait_for can end one at its deadline.
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="vllm-client-io", daemon=True)
        self._loop_thread.start()
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="vllm-client")
        self.retries = 0  # retries taken over this client's life, exported as a metric

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._http.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join()
        self._loop.close()

    def __enter__(self) -> VLLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post(self, path: str, payload: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> Any:
        """POST JSON to ``path`` with bounded retries; returns the JSON body, the text body, or None when empty.

        Raises:
            PolicyTimeout: every attempt timed out or failed to connect, or the call's deadline passed.
            PolicyError: the server answered 4xx, kept answering 5xx/429, or sent a JSON body that does not
                parse; or the request cannot be sent (e.g. an unsupported URL).
        """
        url = f"{self.base_url}{path}"
        # Encoded here, in the caller's thread: bodies carry base64 screenshots and the event loop is shared.
        content = None if payload is None else json.dumps(
            payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        give_up_at = time.monotonic() + self.deadline
        last_error: Exception | None = None
        attempts = 0
        while attempts <= self.max_retries:
            if attempts:
                pause = self.backoff * 2 ** (attempts - 1)
                if time.monotonic() + pause >= give_up_at:
                    break
                self.retries += 1
                time.sleep(pause)
            attempts += 1
            exchange = self._exchange(url, content, params, give_up_at - time.monotonic())
            try:
                response = asyncio.run_coroutine_threadsafe(exchange, self._loop).result()
            except asyncio.TimeoutError as exc:  # the deadline passed during this attempt
                last_error = exc
                break
            except RETRYABLE_ERRORS as exc:
                last_error = exc
                continue
            except httpx.HTTPError as exc:
                raise PolicyError(f"POST {url}: cannot send the request: {exc!r}") from exc
            if response.status_code == 429 or response.status_code >= 500:
                last_error = PolicyError(f"HTTP {response.status_code}: {response.text[:500]}")
                continue
            if response.status_code >= 400:
                raise PolicyError(f"POST {url}: HTTP {response.status_code}: {response.text[:500]}")
            return _body(url, response)
        # The loop ends with every attempt used, or earlier because the deadline left no room for another.
        cut_short = attempts <= self.max_retries or isinstance(last_error, asyncio.TimeoutError)
        tried = f"{attempts} attempts" + (f" within the {self.deadline:g} s deadline" if cut_short else "")
        if isinstance(last_error, PolicyError):
            raise PolicyError(f"POST {url}: failed after {tried}: {last_error}") from last_error
        if isinstance(last_error, asyncio.TimeoutError):
            raise PolicyTimeout(f"POST {url}: no complete answer after {tried}") from last_error
        raise PolicyTimeout(f"POST {url}: no answer after {tried}: {last_error!r}") from last_error

    async def _exchange(self, url: str, content: bytes | None, params: dict[str, Any] | None,
                        seconds: float) -> httpx.Response:
        """One HTTP POST, the whole response read, ended after ``seconds`` (asyncio.TimeoutError)."""
        headers = {"Content-Type": "application/json"} if content is not None else None
        request = self._http.post(url, content=content, params=params, headers=headers)
        return await asyncio.wait_for(request, max(seconds, 0.0))

    def _payload(self, request: GenerationRequest, sampling: SamplingParams) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": openai_messages(request.messages),
            "max_tokens": sampling.max_tokens,
            "temperature": 0.0 if sampling.greedy else sampling.temperature,
            "top_p": 1.0 if sampling.greedy else sampling.top_p,
            "logprobs": True,
            # vLLM extensions: the completion's token ids, and keep tool-call tags in the text.
            "return_token_ids": True,
            "skip_special_tokens": True,
        }
        if sampling.seed is not None:
            payload["seed"] = sampling.seed
        return payload

    def generate_one(self, request: GenerationRequest, sampling: SamplingParams) -> Generation:
        """Send one request and wait for its generation (blocking; retries as :meth:`post`).

        Raises:
            PolicyError: as :meth:`post`, or the reply is not a chat completion with matching token ids and
                log-probs (the message names the URL).
        """
        path = "/v1/chat/completions"
        body = self.post(path, self._payload(request, sampling))
        where = f"POST {self.base_url}{path}"
        try:
            completion = ChatCompletion.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            problem = f"{'.'.join(str(p) for p in first['loc']) or 'body'}: {first['msg']}"
            raise PolicyError(f"{where}: not a chat completion ({problem}): {str(body)[:300]}") from exc
        choice = completion.choices[0]
        logprobs = tuple(item.logprob for item in (choice.logprobs.content if choice.logprobs else None) or ())
        token_ids = tuple(choice.token_ids or ())
        if len(token_ids) != len(logprobs):
            raise PolicyError(f"{where}: server returned {len(token_ids)} token ids but {len(logprobs)} log-probs")
        return Generation(
            text=choice.message.content or "",
            token_ids=token_ids,
            logprobs=logprobs,
            finish_reason=choice.finish_reason or "",
            prompt_tokens=completion.usage.prompt_tokens,
            model=completion.model or request.model or self.model,
        )

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingParams) -> list[Generation]:
        """Send every request (at most ``max_concurrency`` at once); results in request order.

        A seeded ``sampling`` seeds request ``i`` with ``seed + i``: vLLM seeds each request on its own, so one
        seed for all would give identical prompts (a GRPO group's N samples of one prompt) identical answers,
        where the local backend draws them from one random stream. Reproducible either way.
        """
        if sampling.seed is None:
            per_request = [sampling] * len(requests)
        else:
            per_request = [dataclasses.replace(sampling, seed=sampling.seed + i) for i in range(len(requests))]
        futures = [self._pool.submit(self.generate_one, r, s) for r, s in zip(requests, per_request)]
        return [future.result() for future in futures]


def _body(url: str, response: httpx.Response) -> Any:
    """The answer's JSON (or text, for endpoints that answer plain text; None when empty).

    Raises:
        PolicyError: the server says the body is JSON, but it does not parse.
    """
    if not response.content:
        return None
    # Some vLLM endpoints (adapter loading) answer plain text rather than JSON.
    if not response.headers.get("content-type", "").startswith("application/json"):
        return response.text
    try:
        return response.json()
    except ValueError as exc:
        raise PolicyError(f"POST {url}: HTTP {response.status_code} body is not valid JSON: "
                          f"{response.text[:300]!r}") from exc
