"""The virtual adbd at the wire level: transport messages, shell v1/v2, sync, the shell subset, escaping.

These talk the ADB transport protocol to the server directly over a socket (no adb binary), so they pin down
the bytes an adb server sees; tests/test_android_env.py drives the same server through the real adb.
"""

from __future__ import annotations

import errno
import logging
import shlex
import socket
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guiagent.envs.android.adb_env import encode_input_text
from guiagent.envs.sim.adbd import (
    A_CLSE, A_CNXN, A_OKAY, A_OPEN, A_VERSION, A_WRTE, MAX_STREAMS, SimShell, decode_input_text, pack_message,
    read_message, serve, tokenize,
)
from guiagent.envs.sim.device import MobileSim

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def sim() -> MobileSim:
    return MobileSim()


class RawHost:
    """A minimal adb host: CNXN, then one service per call, acknowledging every WRTE."""

    def __init__(self, port: int, max_payload: int = 256 * 1024):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(pack_message(A_CNXN, A_VERSION, max_payload, b"host::features=shell_v2\x00"))
        self.banner = read_message(self.sock)
        self.next_id = 100

    def open(self, service: str) -> int:
        self.next_id += 1
        self.sock.sendall(pack_message(A_OPEN, self.next_id, 0, service.encode() + b"\x00"))
        command, remote, local, _ = read_message(self.sock)
        assert (command, local) == (A_OKAY, self.next_id), f"OPEN {service} refused"
        return remote

    def read_stream(self, remote: int, until_close: bool = True, nbytes: int | None = None) -> bytes:
        data = bytearray()
        while True:
            command, arg0, arg1, payload = read_message(self.sock)
            if command == A_WRTE:
                data += payload
                self.sock.sendall(pack_message(A_OKAY, self.next_id, remote))
                if nbytes is not None and len(data) >= nbytes:
                    return bytes(data)
            elif command == A_CLSE:
                return bytes(data)

    def write(self, remote: int, payload: bytes) -> None:
        self.sock.sendall(pack_message(A_WRTE, self.next_id, remote, payload))
        command, _, _, _ = read_message(self.sock)
        assert command == A_OKAY

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def host(sim):
    adbd = serve(sim)
    raw = RawHost(adbd.port)
    try:
        yield raw
    finally:
        raw.close()
        adbd.close()


def test_cnxn_banner_advertises_only_implemented_features(host):
    command, version, max_payload, banner = host.banner
    assert command == A_CNXN and version == A_VERSION
    assert max_payload == 256 * 1024  # negotiated down to the host's
    assert banner.startswith(b"device::ro.product.name=mobilesim;ro.product.model=MobileSim;")
    assert banner.endswith(b"features=shell_v2")


def test_shell_v1_mixes_output_and_closes(host):
    remote = host.open("shell:echo hello; nosuchcmd")
    assert host.read_stream(remote) == b"hello\n/system/bin/sh: nosuchcmd: not found\n"


def test_shell_v2_separates_streams_and_reports_exit_status(host):
    remote = host.open("shell,v2,raw:getprop sys.boot_completed; nosuchcmd")
    data = host.read_stream(remote)
    packets, i = [], 0
    while i < len(data):
        kind, length = struct.unpack_from("<BI", data, i)
        packets.append((kind, data[i + 5:i + 5 + length]))
        i += 5 + length
    assert packets == [(1, b"1\n"), (2, b"/system/bin/sh: nosuchcmd: not found\n"), (3, bytes([127]))]


def test_screencap_is_split_into_acknowledged_writes_of_the_negotiated_size(sim):
    adbd = serve(sim)
    raw = RawHost(adbd.port, max_payload=4096)
    try:
        remote = raw.open("exec:screencap -p")
        png = raw.read_stream(remote)
        assert png == sim.screenshot_png() and len(png) > 4096
    finally:
        raw.close()
        adbd.close()


def test_sync_send_stat_recv_list(host, sim):
    remote = host.open("sync:")
    body = b"x" * 70000
    path = b"/sdcard/a.bin,33188"
    request = b"SEND" + struct.pack("<I", len(path)) + path
    for start in range(0, len(body), 65536):
        chunk = body[start:start + 65536]
        request += b"DATA" + struct.pack("<I", len(chunk)) + chunk
    host.write(remote, request + b"DONE" + struct.pack("<I", 0))
    assert host.read_stream(remote, nbytes=8) == b"OKAY" + bytes(4)
    assert sim.files["/sdcard/a.bin"] == body

    host.write(remote, b"STAT" + struct.pack("<I", 13) + b"/sdcard/a.bin")
    reply = host.read_stream(remote, nbytes=16)
    assert reply[:4] == b"STAT" and struct.unpack("<3I", reply[4:])[:2] == (0o100644, 70000)

    host.write(remote, b"RECV" + struct.pack("<I", 13) + b"/sdcard/a.bin")
    got = host.read_stream(remote, nbytes=len(body) + 2 * 8 + 8)
    assert got[:4] == b"DATA" and got.endswith(b"DONE" + bytes(4))
    assert got[8:8 + 65536] + got[8 + 65536 + 8:-8] == body

    host.write(remote, b"LIST" + struct.pack("<I", 7) + b"/sdcard")
    listing = host.read_stream(remote, nbytes=20 + 5 + 20)
    assert listing.startswith(b"DENT") and b"a.bin" in listing and listing.endswith(b"DONE" + bytes(16))

    host.write(remote, b"RECV" + struct.pack("<I", 8) + b"/no/such")
    fail = host.read_stream(remote, nbytes=8)
    assert fail[:4] == b"FAIL"


def test_unknown_service_is_refused(host):
    host.sock.sendall(pack_message(A_OPEN, 7, 0, b"reverse:list-forward\x00"))
    command, _, local, _ = read_message(host.sock)
    assert (command, local) == (A_CLSE, 7)


def test_hang_stops_answering_until_resume(sim):
    adbd = serve(sim)
    raw = RawHost(adbd.port)
    try:
        adbd.hang()
        raw.sock.settimeout(0.5)
        raw.sock.sendall(pack_message(A_OPEN, 1, 0, b"shell:echo hi\x00"))
        with pytest.raises(socket.timeout):
            read_message(raw.sock)
        adbd.resume()
        raw.sock.settimeout(5)
        command, _, _, _ = read_message(raw.sock)
        assert command == A_OKAY
    finally:
        raw.close()
        adbd.close()


def test_drop_closes_connections(sim):
    adbd = serve(sim)
    raw = RawHost(adbd.port)
    try:
        adbd.drop()
        with pytest.raises((ConnectionError, OSError)):
            raw.open("shell:echo hi")
    finally:
        raw.close()
        adbd.close()


# --- what a local client cannot do to the server ------------------------------------------------------------


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (reading and dropping what it sends)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_failed_accept_is_logged_and_the_device_still_answers(sim, monkeypatch, caplog):
    # The first accept fails as it does when the process runs out of file descriptors; the accept loop used
    # to end there, leaving a listening port that nobody answers while the process lived on.
    real_accept = socket.socket.accept
    failures = []

    def accept_emfile_once(listener):
        if not failures:
            failures.append(1)
            raise OSError(errno.EMFILE, "Too many open files")
        return real_accept(listener)

    monkeypatch.setattr(socket.socket, "accept", accept_emfile_once)
    with caplog.at_level(logging.WARNING, logger="guiagent.envs.sim.adbd"):
        adbd = serve(sim)
        try:
            raw = RawHost(adbd.port)
            try:
                assert raw.read_stream(raw.open("shell:echo still here")) == b"still here\n"
            finally:
                raw.close()
            assert adbd.counters["accept_errors"] == 1
        finally:
            adbd.close()
    assert any("Too many open files" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("sent", [b"", pack_message(A_CNXN, A_VERSION, 4096, b"host::")[:10]],
                         ids=["silent", "half-a-header"])
def test_connection_that_does_not_complete_the_handshake_is_closed(sim, sent):
    adbd = serve(sim, io_timeout=0.5)
    try:
        with socket.create_connection(("127.0.0.1", adbd.port)) as sock:
            sock.sendall(sent)
            start = time.monotonic()
            assert _closed_by_peer(sock, within=5)
            assert 0.4 < time.monotonic() - start < 3
        assert adbd.counters["timeouts"] == 1
    finally:
        adbd.close()


def test_idle_connection_is_closed_but_not_while_a_stream_is_open(sim):
    adbd = serve(sim, idle_timeout=0.5)
    raw = RawHost(adbd.port)
    try:
        # A command that runs longer than the idle timeout: the open stream keeps the connection.
        assert raw.read_stream(raw.open("shell:sleep 1; echo done")) == b"done\n"
        start = time.monotonic()
        assert _closed_by_peer(raw.sock, within=5)
        assert 0.4 < time.monotonic() - start < 3
        assert adbd.counters["timeouts"] == 1
    finally:
        raw.close()
        adbd.close()


def test_idle_connection_is_kept_by_default(sim):
    # An adb server keeps its connection open while the device is idle; adbd must not drop it.
    adbd = serve(sim, io_timeout=0.3)
    raw = RawHost(adbd.port)
    try:
        time.sleep(1.0)
        assert raw.read_stream(raw.open("shell:echo hi")) == b"hi\n"
    finally:
        raw.close()
        adbd.close()


def test_connections_over_the_cap_are_refused_until_one_closes(sim):
    adbd = serve(sim, max_connections=2)
    hosts = [RawHost(adbd.port), RawHost(adbd.port)]
    try:
        with pytest.raises((ConnectionError, OSError)):
            hosts.append(RawHost(adbd.port))  # accepted, then closed before any answer
        assert adbd.counters["refused"] == 1
        assert hosts[0].read_stream(hosts[0].open("shell:echo served")) == b"served\n"
        hosts.pop(0).close()
        deadline = time.monotonic() + 5
        while True:  # the freed slot serves a new host once the server has seen the close
            try:
                hosts.append(RawHost(adbd.port))
                break
            except (ConnectionError, OSError):
                assert time.monotonic() < deadline, "a closed connection never freed its slot"
                time.sleep(0.05)
        assert hosts[-1].read_stream(hosts[-1].open("shell:echo again")) == b"again\n"
    finally:
        for raw in hosts:
            raw.close()
        adbd.close()


def test_open_before_cnxn_closes_the_connection(sim):
    adbd = serve(sim)
    try:
        with socket.create_connection(("127.0.0.1", adbd.port), timeout=5) as sock:
            sock.sendall(pack_message(A_OPEN, 1, 0, b"shell:echo hi\x00"))
            with pytest.raises((ConnectionError, OSError)):
                read_message(sock)  # no OKAY, no output: the connection is closed
        assert adbd.counters["protocol_errors"] == 1
        raw = RawHost(adbd.port)  # a well-behaved host is still served
        try:
            assert raw.read_stream(raw.open("shell:echo ok")) == b"ok\n"
        finally:
            raw.close()
    finally:
        adbd.close()


def test_streams_per_connection_are_capped(host):
    remotes = [host.open("shell:") for _ in range(MAX_STREAMS)]  # interactive shells stay open
    assert len(set(remotes)) == MAX_STREAMS
    host.next_id += 1
    host.sock.sendall(pack_message(A_OPEN, host.next_id, 0, b"shell:echo one too many\x00"))
    command, _, local, _ = read_message(host.sock)
    assert (command, local) == (A_CLSE, host.next_id)  # refused; the connection itself lives on
    host.sock.sendall(pack_message(A_CLSE, host.next_id, remotes[0]))  # closing one frees its slot
    assert host.read_stream(host.open("shell:echo fits")) == b"fits\n"


# --- the shell subset -------------------------------------------------------------------------------------


def test_tokenize_quotes_operators_and_status():
    assert tokenize("echo 'a b' \"c $? d\" e\\ f;x&&y||z") == [
        "echo", "a b", "c \x00? d", "e f", (";",), "x", ("&&",), "y", ("||",), "z"]
    assert tokenize("cmd 2>&1 >/dev/null 2> err") == ["cmd", ("2>&1",), (">",), "/dev/null", ("2>",), "err"]
    assert tokenize("echo a2>b") == ["echo", "a2", (">",), "b"]
    with pytest.raises(ValueError):
        tokenize("echo 'open")


def test_shell_semantics_adbutils_relies_on(sim):
    shell = SimShell(sim)
    # adbutils.dump_hierarchy: remove, dump, report success, then sync-pull the file.
    result = shell.run("rm -f /data/local/tmp/uidump.xml; uiautomator dump /data/local/tmp/uidump.xml && echo success")
    assert result.status == 0 and b"success" in result.stdout
    assert sim.files["/data/local/tmp/uidump.xml"].startswith(b"<?xml")
    # adbutils.shell2 (v1): the exit status of the command through `echo X4EXIT:$?`.
    assert shell.run("ls /nope; echo X4EXIT:$?").stdout.endswith(b"X4EXIT:1\n")
    assert shell.run("false || echo fallback").stdout == b"fallback\n"
    assert shell.run("false && echo never").stdout == b""
    assert shell.run("echo hi > /sdcard/t.txt; cat /sdcard/t.txt | grep hi").stdout == b"hi\n"
    assert shell.run("frobnicate").status == 127
    assert shell.run("dumpsys window windows").stdout.count(b"mCurrentFocus=Window{") == 1
    # adbutils.open_browser and the usual 'go home' intent.
    assert shell.run("am start -a android.intent.action.VIEW -d https://example.com").status == 0
    assert "browser" in sim.current_focus()[0]
    assert shell.run("am start -a android.intent.action.MAIN -c android.intent.category.HOME").status == 0
    assert sim.current_focus()[0] == "com.guiagent.launcher"
    assert shell.run("am start -a android.intent.action.VIEW").status != 0


def test_input_text_rejects_non_ascii_like_android_but_ime_types_it(sim):
    shell = SimShell(sim, adb_keyboard=True)
    assert shell.run("input text héllo").status != 0
    import base64

    msg = base64.b64encode("héllo 世界".encode()).decode()
    # The broadcast only types when ADBKeyboard is the selected input method, as on a phone.
    assert shell.run(f"am broadcast -a ADB_INPUT_B64 --es msg {msg}").status == 0
    assert shell.settings[("secure", "default_input_method")] != "com.android.adbkeyboard/.AdbIME"
    assert shell.run("ime set com.android.adbkeyboard/.AdbIME").status == 0
    assert SimShell(sim, adb_keyboard=False).run("ime set com.android.adbkeyboard/.AdbIME").status != 0


# --- text escaping ----------------------------------------------------------------------------------------


def test_decode_input_text_follows_android():
    assert decode_input_text("a%sb") == "a b"
    assert decode_input_text("%%s") == "% "
    assert decode_input_text("100%") == "100%"


@pytest.mark.parametrize("text", ["hello world", "50%s off", "%s", "a%%sb", "it's \"quoted\" $HOME `x` ;&|<>", "% ", ""])
def test_encode_input_text_examples(text):
    assert "".join(decode_input_text(chunk) for chunk in encode_input_text(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40))
def test_input_text_round_trips_through_quoting_and_android_unescaping(text):
    typed = []
    for chunk in encode_input_text(text):
        words = tokenize("input text " + shlex.quote(chunk))
        assert words[:2] == ["input", "text"] and len(words) == 3, words
        typed.append(decode_input_text(words[2]))
    assert "".join(typed) == text


def test_encode_input_text_refuses_what_input_text_cannot_type():
    with pytest.raises(ValueError):
        encode_input_text("naïve")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                        min_size=1, max_size=12), min_size=1, max_size=5))
def test_tokenize_inverts_shlex_quote(words):
    # adbutils joins list arguments with shlex.quote; the device shell must split them back exactly.
    assert tokenize(" ".join(shlex.quote(w) for w in words)) == words
