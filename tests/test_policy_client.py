"""vLLM client against a real local HTTP server: retries, timeouts, concurrency limit, payload, parsing.

:class:`ScriptedServer` plays servers that misbehave below HTTP (drip bytes, stay silent, hang up); other tests
import it (tests/test_policy_serve.py).
"""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from guiagent.errors import PolicyError, PolicyTimeout
from guiagent.net import free_port
from guiagent.policy.base import GenerationRequest, SamplingParams
from guiagent.policy.client import VLLMClient, openai_messages
from guiagent.policy.prompts import PromptConfig, build_messages


def completion(model: str) -> dict:
    """A chat completion as vLLM answers it (with its token-id and log-prob extensions)."""
    return {
        "model": model,
        "choices": [{"message": {"content": "<tool_call>ok</tool_call>"}, "finish_reason": "stop",
                     "token_ids": [5, 6, 2],
                     "logprobs": {"content": [{"logprob": -0.5}, {"logprob": -0.25}, {"logprob": -0.125}]}}],
        "usage": {"prompt_tokens": 42},
    }


class FakeVLLM(ThreadingHTTPServer):
    """A small HTTP server answering /v1/chat/completions like vLLM, with scripted failures."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.statuses: list[int] = []  # status codes to answer before answering normally
        self.delay = 0.0
        self.bodies: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeVLLM

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.bodies.append(body)
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
            status = server.statuses.pop(0) if server.statuses else 200
        time.sleep(server.delay)
        with server.lock:
            server.in_flight -= 1
        if status != 200:
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"scripted failure")
            return
        data = json.dumps(completion(body["model"])).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_vllm():
    server = FakeVLLM()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def request_():
    return GenerationRequest(build_messages("open settings", Image.new("RGB", (56, 112), "red"), [], PromptConfig()))


def test_generation_is_parsed_and_payload_carries_images_and_sampling(fake_vllm, request_):
    with VLLMClient(fake_vllm.url, "tiny") as client:
        gen = client.generate([request_], SamplingParams(max_tokens=7, temperature=0.7, top_p=0.9, seed=3))[0]
    assert (gen.text, gen.token_ids, gen.logprobs) == ("<tool_call>ok</tool_call>", (5, 6, 2), (-0.5, -0.25, -0.125))
    assert (gen.finish_reason, gen.prompt_tokens, gen.model) == ("stop", 42, "tiny")
    body = fake_vllm.bodies[0]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (7, 0.7, 0.9, 3)
    assert body["logprobs"] is True and body["return_token_ids"] is True
    url = body["messages"][-1]["content"][-1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (56, 112)  # the resized image the prompt describes, sent losslessly


def test_greedy_and_adapter_names_reach_the_server(fake_vllm, request_):
    with VLLMClient(fake_vllm.url, "tiny") as client:
        gen = client.generate([GenerationRequest(request_.messages, model="policy-v3")], SamplingParams(greedy=True))[0]
    assert fake_vllm.bodies[0]["model"] == "policy-v3" and gen.model == "policy-v3"
    assert fake_vllm.bodies[0]["temperature"] == 0.0


def test_server_errors_are_retried_then_succeed(fake_vllm, request_):
    fake_vllm.statuses = [503, 429]
    with VLLMClient(fake_vllm.url, "tiny", max_retries=2, backoff=0.01) as client:
        client.generate([request_], SamplingParams(greedy=True))
        assert client.retries == 2
    assert len(fake_vllm.bodies) == 3


def test_retries_are_bounded_and_raise_policy_error(fake_vllm, request_):
    fake_vllm.statuses = [500] * 10
    with VLLMClient(fake_vllm.url, "tiny", max_retries=2, backoff=0.01) as client:
        with pytest.raises(PolicyError, match="after 3 attempts"):
            client.generate([request_], SamplingParams(greedy=True))
    assert len(fake_vllm.bodies) == 3


def test_client_errors_are_not_retried(fake_vllm, request_):
    fake_vllm.statuses = [400]
    with VLLMClient(fake_vllm.url, "tiny", max_retries=3, backoff=0.01) as client:
        with pytest.raises(PolicyError, match="HTTP 400"):
            client.generate([request_], SamplingParams(greedy=True))
    assert len(fake_vllm.bodies) == 1


def test_slow_server_raises_policy_timeout(fake_vllm, request_):
    fake_vllm.delay = 1.0
    with VLLMClient(fake_vllm.url, "tiny", timeout=0.2, max_retries=1, backoff=0.01) as client:
        with pytest.raises(PolicyTimeout) as info:
            client.generate([request_], SamplingParams(greedy=True))
    assert info.value.__cause__ is not None  # raised from the last transport error


def test_unreachable_server_raises_policy_timeout(request_):
    with VLLMClient("http://127.0.0.1:9", "tiny", timeout=1, max_retries=1, backoff=0.01) as client:
        with pytest.raises(PolicyTimeout, match="2 attempts"):
            client.generate([request_], SamplingParams(greedy=True))


def test_concurrency_is_limited(fake_vllm, request_):
    fake_vllm.delay = 0.2
    with VLLMClient(fake_vllm.url, "tiny", max_concurrency=2) as client:
        results = client.generate([request_] * 6, SamplingParams(greedy=True))
    assert len(results) == 6
    assert fake_vllm.max_in_flight == 2


def test_openai_messages_keep_text_and_order():
    image = Image.new("RGB", (28, 28), "blue")
    messages = [{"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image", "image": image}]}]
    converted = openai_messages(messages)
    assert converted[0] == {"role": "system", "content": "sys"}
    assert converted[1]["content"][0] == {"type": "text", "text": "hi"}
    assert converted[1]["content"][1]["type"] == "image_url"


# --- servers that misbehave below HTTP ---------------------------------------------------------------------


class ScriptedServer:
    """A TCP server on a free port that runs ``script(conn, stop)`` for every connection, in its own thread.

    A context manager: leaving it (also when the test fails) stops accepting, closes every connection, sets
    ``stop`` for scripts that loop, and joins their threads.

    Attributes:
        connections: How many connections were accepted.
    """

    def __init__(self, script: Callable[[socket.socket, threading.Event], None]):
        self.script = script
        self.port = free_port()
        self.stop = threading.Event()
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.1)
        self._socks: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ScriptedServer:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._threads[0].join(timeout=5)
        self._listener.close()
        for sock in list(self._socks):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self._threads[1:]:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._socks.append(conn)
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.script(conn, self.stop)
        except OSError:
            pass  # the client hung up, or __exit__ closed the connection
        finally:
            conn.close()  # one exchange per connection


def read_request(conn: socket.socket) -> bytes:
    """Read one HTTP request (headers and Content-Length body); returns its head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("client hung up")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lengths = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    length = lengths[0] if lengths else 0
    while len(body) < length:
        body += conn.recv(65536)
    return head


def http_answer(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close"
    return head.encode() + b"\r\n\r\n" + body


def drip(conn: socket.socket, stop: threading.Event, data: bytes, every: float = 0.1) -> None:
    """Send ``data`` one byte per ``every`` seconds: each read is quick, so no per-read timeout ever fires."""
    for byte in data:
        if stop.wait(every):
            return
        conn.sendall(bytes([byte]))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("part", ["headers", "body"])
def test_dripping_server_is_cut_off_at_the_deadline(request_, part):
    def script(conn, stop):
        read_request(conn)
        if part == "headers":
            drip(conn, stop, b"HTTP/1.1 200 OK\r\n" + b"X-Drip: " + b"z" * 100_000)
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            drip(conn, stop, b" " * 100_000)

    with ScriptedServer(script) as server:
        with VLLMClient(server.url, "tiny", timeout=1.0, max_retries=2, backoff=0.01, deadline=1.5) as client:
            start = time.monotonic()
            with pytest.raises(PolicyTimeout, match=f"{server.url}/v1/chat/completions.*1.5 s deadline"):
                client.generate([request_], SamplingParams(greedy=True))
            assert 1.4 < time.monotonic() - start < 3.5
        assert server.connections == 1  # the one attempt used the whole deadline: none left to retry


@pytest.mark.timeout(30)
def test_silent_server_fails_at_the_deadline_not_after_the_read_timeouts(request_):
    def script(conn, stop):
        read_request(conn)
        stop.wait()

    with ScriptedServer(script) as server, \
            VLLMClient(server.url, "tiny", timeout=60, max_retries=2, deadline=1.0) as client:
        start = time.monotonic()
        with pytest.raises(PolicyTimeout, match=server.url):
            client.generate([request_], SamplingParams(greedy=True))
        assert time.monotonic() - start < 2.5


def test_deadline_stops_retries_that_would_not_fit(request_):
    def script(conn, stop):
        read_request(conn)
        conn.sendall(http_answer(503, b"busy"))

    with ScriptedServer(script) as server:
        with VLLMClient(server.url, "tiny", max_retries=5, backoff=0.4, deadline=1.0) as client:
            start = time.monotonic()
            with pytest.raises(PolicyError, match="HTTP 503") as info:
                client.generate([request_], SamplingParams(greedy=True))
            assert time.monotonic() - start < 1.2
        # attempts at 0 s, 0.4 s; the next pause (0.8 s) would end past the deadline
        assert server.connections == 2 and "2 attempts within the 1 s deadline" in str(info.value)


def test_dropped_connection_is_retried(request_):
    def script(conn, stop):
        read_request(conn)
        if server.connections == 1:
            return  # hang up without an answer, as a server restarting does
        conn.sendall(http_answer(200, json.dumps(completion("tiny")).encode()))

    with ScriptedServer(script) as server:
        with VLLMClient(server.url, "tiny", max_retries=1, backoff=0.01) as client:
            gen = client.generate([request_], SamplingParams(greedy=True))[0]
            assert gen.text == "<tool_call>ok</tool_call>" and client.retries == 1
        assert server.connections == 2


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://127.0.0.1:8000", "http://", "http://[::1"])
def test_invalid_url_fails_at_once_and_names_the_url(url):
    start = time.monotonic()
    with pytest.raises(PolicyError, match="invalid policy server URL") as info:
        VLLMClient(url, "tiny", max_retries=3)
    assert url in str(info.value) and not isinstance(info.value, PolicyTimeout)
    assert time.monotonic() - start < 1


@pytest.mark.parametrize("body, content_type", [
    (b"<html>Bad gateway</html>", "application/json"),  # says JSON, is not
    (b"<html>a proxy's login page</html>", "text/html"),
    (b"[1, 2, 3]", "application/json"),
    (b'{"choices": [], "usage": {"prompt_tokens": 3}}', "application/json"),
    (b'{"choices": [{"message": {"content": 5}}], "usage": {"prompt_tokens": 3}}', "application/json"),
    ((b'{"choices": [{"message": {"content": "x"}, "token_ids": ["7"], "logprobs": {"content": [{"logprob": -1}]}}],'
      b' "usage": {"prompt_tokens": 3}}'), "application/json"),
    (b'{"choices": [{"message": {"content": "x"}}]}', "application/json"),
], ids=["not-json", "html", "list", "no-choices", "content-not-text", "token-id-not-int", "no-usage"])
def test_malformed_reply_is_a_policy_error_naming_the_url(request_, body, content_type):
    def script(conn, stop):
        read_request(conn)
        conn.sendall(http_answer(200, body, content_type))

    with ScriptedServer(script) as server:
        with VLLMClient(server.url, "tiny", max_retries=2, backoff=0.01) as client, \
                pytest.raises(PolicyError, match=f"{server.url}/v1/chat/completions") as info:
            client.generate([request_], SamplingParams(greedy=True))
        assert not isinstance(info.value, PolicyTimeout)
        assert server.connections == 1  # the same request would get the same reply: not retried


@pytest.mark.timeout(60)
def test_cli_deadline_bounds_a_generation_against_a_silent_server(tmp_path):
    screenshot = tmp_path / "screen.png"
    Image.new("RGB", (56, 112), "red").save(screenshot)

    def script(conn, stop):
        read_request(conn)
        stop.wait()

    with ScriptedServer(script) as server:
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "guiagent", "policy", "generate", "tiny", str(screenshot), "open settings",
             "--server", server.url, "--deadline", "1"],
            check=False, capture_output=True, text=True, timeout=50,
        )
        elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stderr
    assert "error:" in result.stderr and server.url in result.stderr and "deadline" in result.stderr
    assert server.connections == 1 and elapsed < 30
