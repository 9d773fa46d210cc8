"""A virtual adbd: one :class:`~guiagent.envs.sim.device.MobileSim` behind the real ADB transport protocol.

The Debian ``adb`` server connects to it with ``adb connect 127.0.0.1:PORT`` exactly as it connects to an
emulator or a phone in TCP mode, so adbutils, ``adb shell`` and the Android backend drive MobileSim through
the same code paths they use on real devices.

What is implemented (see AOSP ``packages/modules/adb``: protocol.txt, SERVICES.TXT, SYNC.TXT):

- Transport messages: a 24-byte little-endian header ``command, arg0, arg1, data_length, data_check,
  magic = command ^ 0xffffffff`` and a payload. ``CNXN`` without authentication (version and max payload
  negotiated down to the host's), ``OPEN``/``OKAY``/``WRTE``/``CLSE`` with local/remote stream ids and the
  one-write-in-flight flow control (each ``WRTE`` waits for the peer's ``OKAY``).
- Services: ``shell:`` (v1: stdout and stderr mixed, no exit code), ``shell,v2,...:`` (packets ``id(1) +
  length(4) + data`` with ids stdin 0, stdout 1, stderr 2, exit 3, close-stdin 4, window-size 5),
  ``exec:`` (raw output, as ``adb exec-out``) and ``sync:`` (``STAT``/``LIST``/``SEND``/``RECV``/``QUIT`` of
  protocol v1; the ``*_v2`` sync features are not advertised, so the host never sends them).
  The banner advertises only ``shell_v2``.
- A small POSIX-sh subset (quotes, backslashes, ``;``/``&&``/``||``/``|``, ``>``/``>>``/``2>``/``2>&1``/``<``
  redirections, ``$?``) and the commands agents and adbutils send: ``screencap``, ``input``, ``wm``,
  ``uiautomator dump``, ``am start|force-stop|broadcast``, ``monkey``, ``dumpsys window|display|activity``,
  ``getprop``, ``settings``, ``ime``, ``pm list packages|path``, ``rm``, ``cat``, ``echo``, ``ls``, ``mkdir``,
  ``sleep``, ``true``/``false``, ``grep``. Anything else answers like mksh:
  ``/system/bin/sh: X: not found`` with status 127.

Fault injection for the farm's robustness tests: :meth:`VirtualAdbd.hang` stops answering (sockets stay
open, nothing is read), :meth:`VirtualAdbd.drop` closes every connection and refuses new ones until
:meth:`VirtualAdbd.resume`; :meth:`VirtualAdbd.close` is the device dying.

What a local client cannot do to it: stop the accept loop (a failed ``accept``, e.g. EMFILE when file
descriptors run out, is logged, counted and retried after a back-off), hold it with silent or half-sent
connections (``CNXN`` and every later message must arrive within ``io_timeout``; ``idle_timeout`` closes
connections with no open stream), exhaust its threads (at most ``max_connections`` connections, each with
at most :data:`MAX_STREAMS` streams) or open a service before the handshake (the connection is closed).

Usage::

    sim = MobileSim()
    with serve(sim, port=0) as adbd:          # port 0: pick a free port
        subprocess.run(["adb", "-P", "5137", "connect", adbd.serial])
"""

from __future__ import annotations

import base64
import itertools
import logging
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# --- Transport constants (AOSP adb.h) ------------------------------------------------------------------------

A_SYNC = 0x434E5953
A_CNXN = 0x4E584E43
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_AUTH = 0x48545541
A_STLS = 0x534C5453
A_VERSION_MIN = 0x01000000
A_VERSION = 0x01000001  # from this version on, data_check is not validated (and we send 0)
MAX_PAYLOAD = 1024 * 1024
MAX_STREAMS = 64  # open streams per connection (each runs a thread); adb hosts use a handful
_HEADER = struct.Struct("<6I")
FEATURES = ("shell_v2",)  # advertise only what this module implements

# Shell protocol v2 packet ids (AOSP shell_protocol.h).
SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN, SHELL_WINDOW_SIZE = 0, 1, 2, 3, 4, 5
SYNC_DATA_MAX = 64 * 1024  # largest DATA chunk of the sync protocol

LATIN_IME = "com.android.inputmethod.latin/.LatinIME"
ADB_KEYBOARD_IME = "com.android.adbkeyboard/.AdbIME"
DEFAULT_UI_DUMP = "/sdcard/window_dump.xml"


class ProtocolError(Exception):
    """The peer sent something that is not valid ADB transport protocol."""


def pack_message(command: int, arg0: int, arg1: int, data: bytes = b"", checksum: bool = False) -> bytes:
    """Encode one transport message: 24-byte header + payload.

    Args:
        command: One of the ``A_*`` constants.
        arg0: First argument (e.g. the sender's local stream id).
        arg1: Second argument (e.g. the receiver's stream id).
        data: Payload, at most the negotiated max payload.
        checksum: Fill ``data_check`` with the byte sum that protocol versions below ``A_VERSION`` expect.
    """
    check = sum(data) & 0xFFFFFFFF if checksum else 0
    return _HEADER.pack(command, arg0, arg1, len(data), check, command ^ 0xFFFFFFFF) + data


def _wait_readable(sock: socket.socket, timeout: float | None) -> bool:
    """Wait up to ``timeout`` seconds (None: forever) for ``sock`` to have data or EOF; False on timeout."""
    fd = sock.fileno()
    if fd < 0:
        raise ConnectionError("socket closed")
    poller = select.poll()  # not select(): it fails on descriptors above 1023
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(timeout, 0.0) * 1000))


def _recv_exact(sock: socket.socket, n: int, deadline: float | None = None) -> bytes:
    chunks = []
    while n:
        if deadline is not None and not _wait_readable(sock, deadline - time.monotonic()):
            raise TimeoutError("message not complete before its deadline")
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("peer closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_message(sock: socket.socket, deadline: float | None = None) -> tuple[int, int, int, bytes]:
    """Read one transport message; returns ``(command, arg0, arg1, data)``.

    Args:
        sock: The connection.
        deadline: ``time.monotonic()`` value by which the whole message must have arrived; a peer that
            sends it slower (or stops halfway) gets a ``TimeoutError``. None waits as long as the socket's
            own timeout allows for each chunk.
    """
    command, arg0, arg1, length, _check, magic = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic {magic:#x} for command {command:#x}")
    if length > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {length} bytes exceeds {MAX_PAYLOAD}")
    return command, arg0, arg1, _recv_exact(sock, length, deadline) if length else b""


# --- The shell -----------------------------------------------------------------------------------------------

_STATUS = "\x00?"  # placeholder for `$?`, expanded when the command runs (NUL cannot occur in a service name)
_OPERATORS = ("2>&1", ">>", "&&", "||", "2>", ";", "|", ">", "<", "&")


@dataclass
class _Command:
    argv: list[str] = field(default_factory=list)
    stdout_file: str | None = None
    stdout_append: bool = False
    stderr_file: str | None = None
    stderr_to_stdout: bool = False
    stdin_file: str | None = None


def tokenize(line: str) -> list[str | tuple[str]]:
    """Split a command line the way sh does for the subset we support.

    Returns:
        Words (``str``, quotes removed, ``$?`` left as a placeholder) and operators (1-tuples like ``(";",)``).

    Raises:
        ValueError: Unterminated quote.
    """
    tokens: list[str | tuple[str]] = []
    word: list[str] = []
    in_word = False
    i, n = 0, len(line)

    def flush() -> None:
        nonlocal in_word
        if in_word:
            tokens.append("".join(word))
            word.clear()
            in_word = False

    while i < n:
        c = line[i]
        if c in " \t":
            flush()
            i += 1
        elif c == "\n":
            flush()
            tokens.append((";",))
            i += 1
        elif c == "#" and not in_word:
            while i < n and line[i] != "\n":
                i += 1
        elif c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ValueError("unterminated '")
            word.append(line[i + 1:end])
            in_word = True
            i = end + 1
        elif c == '"':
            i += 1
            in_word = True
            while True:
                if i >= n:
                    raise ValueError('unterminated "')
                c = line[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n and line[i + 1] in '\\"$`\n':
                    if line[i + 1] != "\n":
                        word.append(line[i + 1])
                    i += 2
                elif c == "$" and line.startswith("$?", i):
                    word.append(_STATUS)
                    i += 2
                else:
                    word.append(c)
                    i += 1
        elif c == "\\":
            if i + 1 < n and line[i + 1] != "\n":
                word.append(line[i + 1])
                in_word = True
            i += 2
        elif c == "$" and line.startswith("$?", i):
            word.append(_STATUS)
            in_word = True
            i += 2
        else:
            # `2>` is an operator only when the 2 stands alone as the start of a word.
            op = next((o for o in _OPERATORS if line.startswith(o, i)), None)
            if c == "2" and not in_word:
                op = next((o for o in ("2>&1", "2>") if line.startswith(o, i)), None)
            elif op is not None and op.startswith("2"):
                op = None
            if op is not None:
                flush()
                tokens.append((op,))
                i += len(op)
            else:
                word.append(c)
                in_word = True
                i += 1
    flush()
    return tokens


def _parse(tokens: list[str | tuple[str]]) -> list[tuple[str, list[_Command]]]:
    """Group tokens into ``[(connector, pipeline)]``; the connector says when the pipeline runs."""
    lists: list[tuple[str, list[_Command]]] = []
    connector, pipeline, cmd = ";", [], _Command()
    it = iter(tokens)
    for tok in it:
        if isinstance(tok, str):
            cmd.argv.append(tok)
            continue
        op = tok[0]
        if op in (">", ">>", "2>", "<"):
            target = next(it, None)
            if not isinstance(target, str):
                raise ValueError(f"syntax error: {op} needs a file name")
            if op == "<":
                cmd.stdin_file = target
            elif op == "2>":
                cmd.stderr_file = target
            else:
                cmd.stdout_file, cmd.stdout_append = target, op == ">>"
        elif op == "2>&1":
            cmd.stderr_to_stdout = True
        elif op == "|":
            if not cmd.argv:
                raise ValueError("syntax error near |")
            pipeline.append(cmd)
            cmd = _Command()
        else:  # ; && || & (background is run in the foreground: nothing here outlives the command)
            if cmd.argv:
                pipeline.append(cmd)
            elif pipeline or op != ";":
                raise ValueError(f"syntax error near {op}")
            if pipeline:
                lists.append((connector, pipeline))
            connector, pipeline, cmd = (op if op in ("&&", "||") else ";"), [], _Command()
    if cmd.argv:
        pipeline.append(cmd)
    if pipeline:
        lists.append((connector, pipeline))
    elif connector in ("&&", "||"):
        raise ValueError(f"syntax error: nothing after {connector}")
    return lists


@dataclass
class ShellResult:
    """Outcome of one command line: ``stdout``, ``stderr`` (bytes) and the exit ``status``."""

    stdout: bytes = b""
    stderr: bytes = b""
    status: int = 0


def decode_input_text(arg: str) -> str:
    """What Android's ``input text ARG`` types: each ``%s`` becomes a space (InputShellCommand.sendText)."""
    out: list[str] = []
    escape = False
    for ch in arg:
        if escape:
            escape = False
            if ch == "s":
                out[-1] = " "  # the '%' before it is replaced by the space
                continue
        out.append(ch)
        if ch == "%":
            escape = True
    return "".join(out)


class ShellError(Exception):
    """A command failed: ``message`` goes to stderr, ``status`` is the exit code."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


class SimShell:
    """Runs command lines against one MobileSim, as the device's ``/system/bin/sh`` would.

    Args:
        sim: The simulated phone (a ``MobileSim``).
        adb_keyboard: Whether the ADBKeyboard input method (``com.android.adbkeyboard/.AdbIME``) is installed;
            when it is the selected IME, ``am broadcast -a ADB_INPUT_TEXT|ADB_INPUT_B64 --es msg ...`` types
            unicode text the way the real app does.
    """

    def __init__(self, sim: Any, adb_keyboard: bool = True):
        self.sim = sim
        self.imes = [LATIN_IME] + ([ADB_KEYBOARD_IME] if adb_keyboard else [])
        self.settings: dict[tuple[str, str], str] = {("secure", "default_input_method"): LATIN_IME}
        self._commands: dict[str, Callable[[list[str], bytes], bytes | str | None]] = {
            "screencap": self._screencap, "input": self._input, "wm": self._wm, "uiautomator": self._uiautomator,
            "am": self._am, "monkey": self._monkey, "dumpsys": self._dumpsys, "getprop": self._getprop,
            "settings": self._settings, "ime": self._ime, "pm": self._pm, "rm": self._rm, "cat": self._cat,
            "echo": self._echo, "ls": self._ls, "mkdir": self._mkdir, "sleep": self._sleep, "grep": self._grep,
            "true": lambda args, stdin: None, "false": self._false, "exit": self._exit,
        }

    # -- interpreter --------------------------------------------------------------------------------------
    def run(self, line: str) -> ShellResult:
        """Run one command line; never raises (errors become stderr text and a non-zero status)."""
        result = ShellResult()
        try:
            lists = _parse(tokenize(line))
        except ValueError as exc:
            return ShellResult(stderr=f"/system/bin/sh: {exc}\n".encode(), status=2)
        status = 0
        out, err = bytearray(), bytearray()
        for connector, pipeline in lists:
            if (connector == "&&" and status != 0) or (connector == "||" and status == 0):
                continue
            stdin = b""
            for cmd in pipeline:
                argv = [a.replace(_STATUS, str(status)) for a in cmd.argv]
                stdout, stderr, status = self._run_one(cmd, argv, stdin)
                stdin = stdout
            out += stdin
            err += stderr
            if argv and argv[0] == "exit":
                break
        result.stdout, result.stderr, result.status = bytes(out), bytes(err), status
        return result

    def _run_one(self, cmd: _Command, argv: list[str], stdin: bytes) -> tuple[bytes, bytes, int]:
        name = argv[0]
        handler = self._commands.get(name.rsplit("/", 1)[-1])
        if handler is None:
            return b"", f"/system/bin/sh: {name}: not found\n".encode(), 127
        status, stderr = 0, b""
        try:
            if cmd.stdin_file is not None:
                stdin = self._read_file(cmd.stdin_file)
            out = handler(argv[1:], stdin)
            stdout = out.encode() if isinstance(out, str) else (out or b"")
        except ShellError as exc:
            stdout, stderr, status = b"", f"{name}: {exc}\n".encode() if str(exc) else b"", exc.status
        except Exception as exc:  # a simulator error must not kill the connection; report it like a crash
            log.debug("command %r failed", argv, exc_info=True)
            stdout, stderr, status = b"", f"{name}: {type(exc).__name__}: {exc}\n".encode(), 1
        if cmd.stderr_to_stdout:
            stdout, stderr = stdout + stderr, b""
        if cmd.stderr_file is not None:
            self._write_file(cmd.stderr_file, stderr, append=False)
            stderr = b""
        if cmd.stdout_file is not None:
            self._write_file(cmd.stdout_file, stdout, append=cmd.stdout_append)
            stdout = b""
        return stdout, stderr, status

    # -- files -------------------------------------------------------------------------------------------
    def _read_file(self, path: str) -> bytes:
        if path == "/dev/null":
            return b""
        try:
            return self.sim.files[path]
        except KeyError:
            raise ShellError(f"{path}: No such file or directory") from None

    def _write_file(self, path: str, data: bytes, append: bool) -> None:
        if path == "/dev/null":
            return
        self.sim.files[path] = (self.sim.files.get(path, b"") if append else b"") + data

    def is_dir(self, path: str) -> bool:
        prefix = path.rstrip("/") + "/"
        return path in ("/", "/sdcard", "/data", "/data/local", "/data/local/tmp") or any(
            p.startswith(prefix) for p in list(self.sim.files))

    def list_dir(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        names = {p[len(prefix):].split("/", 1)[0] for p in list(self.sim.files) if p.startswith(prefix)}
        return sorted(names)

    # -- commands ----------------------------------------------------------------------------------------
    def _screencap(self, args: list[str], stdin: bytes) -> bytes | None:
        png = "-p" in args
        files = [a for a in args if not a.startswith("-")]
        if files:
            png = png or files[0].endswith(".png")
        if png:
            data = self.sim.screenshot_png()
        else:
            # Raw framebuffer as Android 9+ writes it: width, height, format (1 = RGBA_8888), dataspace.
            img = self.sim.screenshot_rgb().convert("RGBA")
            data = struct.pack("<4I", img.width, img.height, 1, 0) + img.tobytes()
        if files:
            self._write_file(files[0], data, append=False)
            return None
        return data

    def _input(self, args: list[str], stdin: bytes) -> None:
        if args and args[0] in ("touchscreen", "touchpad", "keyboard", "dpad", "stylus", "gamepad", "mouse"):
            args = args[1:]
        if args[:1] == ["-d"]:  # display id
            args = args[2:]
        if not args:
            raise ShellError("usage: input [<source>] <command> [<arg>...]")
        verb, rest = args[0], args[1:]
        try:
            if verb == "tap":
                x, y = (float(v) for v in rest[:2])
                self.sim.tap(x, y)
            elif verb in ("swipe", "draganddrop"):
                x1, y1, x2, y2 = (float(v) for v in rest[:4])
                duration = int(rest[4]) if len(rest) > 4 else (300 if verb == "swipe" else 1000)
                self.sim.swipe(x1, y1, x2, y2, duration)
            elif verb == "text":
                text = decode_input_text(rest[0]) if rest else ""
                # The virtual keyboard's key map has no key for non-ASCII characters (KeyCharacterMap.getEvents
                # returns null), so Android's `input text` cannot type them: only an input method can.
                if any(not (32 <= ord(ch) < 127) for ch in text):
                    raise ShellError("java.lang.IllegalArgumentException: cannot map text to key events")
                self.sim.input_text(text)
            elif verb == "keyevent":
                codes = [c for c in rest if not c.startswith("--")]
                for code in codes:
                    self.sim.keyevent(int(code) if code.isdigit() else code)
            else:
                raise ShellError(f"Error: Unknown command: {verb}")
        except (ValueError, IndexError):
            raise ShellError(f"Error: bad arguments for {verb}: {' '.join(rest)}") from None

    def _wm(self, args: list[str], stdin: bytes) -> str:
        if args[:1] == ["size"]:
            width, height = self.sim.size
            return f"Physical size: {width}x{height}\n"
        if args[:1] == ["density"]:
            return f"Physical density: {self.sim.props.get('ro.sf.lcd_density', '420')}\n"
        raise ShellError(f"Unknown command: {' '.join(args)}")

    def _uiautomator(self, args: list[str], stdin: bytes) -> str:
        if args[:1] != ["dump"]:
            raise ShellError("Usage: uiautomator dump [--compressed] [file]")
        paths = [a for a in args[1:] if not a.startswith("--")]
        path = paths[0] if paths else DEFAULT_UI_DUMP
        xml = self.sim.dump_ui_xml()
        if not xml.startswith("<?xml"):
            xml = "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>" + xml
        # The real tool's message carries this spelling; scripts grep for it.
        message = f"UI hierchary dumped to: {path}\n"
        if path == "/dev/tty":
            return xml + message
        self._write_file(path, xml.encode("utf-8"), append=False)
        return message

    def _am(self, args: list[str], stdin: bytes) -> str:
        if not args:
            raise ShellError("usage: am [subcommand] [options]")
        verb, rest = args[0], args[1:]
        if verb == "force-stop":
            packages = [a for a in rest if not a.startswith("-")]
            for package in packages:
                self.sim.force_stop(package)
            return ""
        opts = _intent_options(rest)
        if verb in ("start", "start-activity"):
            component = opts.get("-n")
            if component:
                package, _, activity = component.partition("/")
                self.sim.start_app(package, activity or None)
                return f"Starting: Intent {{ cmp={component} }}\n"
            package = opts.get("-p")
            action = opts.get("-a", "")
            if not package and action == "android.intent.action.VIEW" and opts.get("-d", "").startswith("http"):
                package = next((p for p in self.sim.packages() if "browser" in p), None)
            if action == "android.intent.action.MAIN" and opts.get("-c") == "android.intent.category.HOME":
                self.sim.keyevent(3)
                return f"Starting: Intent {{ act={action} cat=[{opts['-c']}] }}\n"
            if package and package in self.sim.packages():
                self.sim.start_app(package, None)
                return f"Starting: Intent {{ act={action} pkg={package} }}\n"
            raise ShellError(f"Error: Activity not started, unable to resolve Intent {{ act={opts.get('-a', '')} }}")
        if verb == "broadcast":
            action = opts.get("-a", "")
            msg = opts.get("msg")
            selected = self.settings[("secure", "default_input_method")]
            if action in ("ADB_INPUT_TEXT", "ADB_INPUT_B64") and msg is not None and selected == ADB_KEYBOARD_IME:
                text = base64.b64decode(msg).decode("utf-8") if action == "ADB_INPUT_B64" else msg
                self.sim.input_text(text)
            return (f"Broadcasting: Intent {{ act={action} flg=0x400000 (has extras) }}\n"
                    "Broadcast completed: result=0\n")
        raise ShellError(f"Unknown command: {verb}")

    def _monkey(self, args: list[str], stdin: bytes) -> str:
        opts = _intent_options(args)
        package = opts.get("-p")
        if package is None or package not in self.sim.packages():
            raise ShellError("** No activities found to run, monkey aborted.", status=252)
        self.sim.start_app(package, None)
        return "  bash arg: -p\n  bash arg: " + package + "\nEvents injected: 1\n"

    def _dumpsys(self, args: list[str], stdin: bytes) -> str:
        package, activity = self.sim.current_focus()
        component = f"{package}/{activity}"
        service = args[0] if args else ""
        if service == "window":
            return (f"WINDOW MANAGER WINDOWS (dumpsys window windows)\n"
                    f"  mCurrentFocus=Window{{5e1d0c3 u0 {component}}}\n"
                    f"  mFocusedApp=ActivityRecord{{9a1b2c4 u0 {component} t42}}\n")
        if service == "display":
            width, height = self.sim.size
            return (f"DISPLAY MANAGER (dumpsys display)\n  mDefaultViewport=DisplayViewport{{valid=true, "
                    f"displayId=0, orientation=0, logicalFrame=Rect(0, 0 - {width}, {height}), "
                    f"deviceWidth={width}, deviceHeight={height}}}\n")
        if service == "activity":
            return (f"ACTIVITY MANAGER ACTIVITIES (dumpsys activity activities)\n"
                    f"    mResumedActivity: ActivityRecord{{9a1b2c4 u0 {component} t42}}\n"
                    f"  ACTIVITY {component} 9a1b2c4 pid=4242\n")
        raise ShellError(f"Can't find service: {service}")

    def _getprop(self, args: list[str], stdin: bytes) -> str:
        props = self.sim.props
        if args:
            return props.get(args[0], args[1] if len(args) > 1 else "") + "\n"
        return "".join(f"[{k}]: [{v}]\n" for k, v in sorted(props.items()))

    def _settings(self, args: list[str], stdin: bytes) -> str:
        if len(args) >= 3 and args[0] == "get":
            return self.settings.get((args[1], args[2]), "null") + "\n"
        if len(args) >= 4 and args[0] == "put":
            self.settings[(args[1], args[2])] = args[3]
            return ""
        raise ShellError("usage: settings get|put NAMESPACE KEY [VALUE]")

    def _ime(self, args: list[str], stdin: bytes) -> str:
        verb = args[0] if args else ""
        if verb == "list":
            return "".join(f"{ime}\n" for ime in self.imes)
        if verb in ("set", "enable") and len(args) > 1:
            if args[1] not in self.imes:
                raise ShellError(f"Unknown input method {args[1]} cannot be selected for user #0")
            if verb == "set":
                self.settings[("secure", "default_input_method")] = args[1]
                return f"Input method {args[1]} selected for user #0\n"
            return f"Input method {args[1]}: already enabled for user #0\n"
        raise ShellError("usage: ime list|set|enable ID")

    def _pm(self, args: list[str], stdin: bytes) -> str:
        if args[:2] == ["list", "packages"]:
            needle = next((a for a in args[2:] if not a.startswith("-")), "")
            return "".join(f"package:{p}\n" for p in sorted(self.sim.packages()) if needle in p)
        if args[:1] == ["path"] and len(args) > 1:
            if args[1] not in self.sim.packages():
                raise ShellError("", status=1)
            return f"package:/data/app/{args[1]}-1/base.apk\n"
        raise ShellError(f"Unknown command: {' '.join(args[:1])}")

    def _rm(self, args: list[str], stdin: bytes) -> None:
        flags = "".join(a[1:] for a in args if a.startswith("-"))
        missing = []
        for path in (a for a in args if not a.startswith("-")):
            prefix = path.rstrip("/") + "/"
            victims = [p for p in list(self.sim.files) if p == path or ("r" in flags and p.startswith(prefix))]
            for p in victims:
                self.sim.files.pop(p, None)
            if not victims and "f" not in flags:
                missing.append(path)
        if missing:
            raise ShellError(f"{missing[0]}: No such file or directory")

    def _cat(self, args: list[str], stdin: bytes) -> bytes:
        files = [a for a in args if a != "-"]
        return b"".join(self._read_file(p) for p in files) if files else stdin

    def _echo(self, args: list[str], stdin: bytes) -> str:
        if args[:1] == ["-n"]:
            return " ".join(args[1:])
        return " ".join(args) + "\n"

    def _ls(self, args: list[str], stdin: bytes) -> str:
        out = []
        for path in [a for a in args if not a.startswith("-")] or ["/"]:
            if path in self.sim.files:
                out.append(path)
            elif self.is_dir(path):
                out.extend(self.list_dir(path))
            else:
                raise ShellError(f"{path}: No such file or directory")
        return "".join(f"{line}\n" for line in out)

    def _mkdir(self, args: list[str], stdin: bytes) -> None:
        return None  # directories exist implicitly in the simulator's flat file map

    def _sleep(self, args: list[str], stdin: bytes) -> None:
        time.sleep(float(args[0]) if args else 0.0)

    def _grep(self, args: list[str], stdin: bytes) -> bytes:
        patterns = [a for a in args if not a.startswith("-")]
        if not patterns:
            raise ShellError("usage: grep PATTERN", status=2)
        lines = [ln for ln in stdin.splitlines(keepends=True) if patterns[0].encode() in ln]
        if not lines:
            raise ShellError("", status=1)
        return b"".join(lines)

    def _false(self, args: list[str], stdin: bytes) -> None:
        raise ShellError("", status=1)

    def _exit(self, args: list[str], stdin: bytes) -> None:
        status = int(args[0]) if args else 0
        if status:
            raise ShellError("", status=status)


def _intent_options(args: list[str]) -> dict[str, str]:
    """Parse ``am``/``monkey`` options: ``-n X``, ``-a X``, ``--es key value`` (extras by key)."""
    opts: dict[str, str] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--es", "--ei", "--ez") and i + 2 < len(args):
            opts[args[i + 1]] = args[i + 2]
            i += 3
        elif a.startswith("-") and i + 1 < len(args) and a not in ("-W", "-S", "-D", "--activity-clear-task"):
            opts[a] = args[i + 1]
            i += 2
        else:
            i += 1
    return opts


ACCEPT_BACKOFF_S = (0.05, 1.0)  # first and longest pause after a failed accept


def accept_loop(listener: socket.socket, closed: threading.Event, on_accept: Callable[[socket.socket], None],
                counters: dict[str, int]) -> None:
    """Accept connections on ``listener`` and hand each to ``on_accept`` until ``closed`` is set.

    Nothing a client does ends the loop: a failed ``accept`` (EMFILE/ENFILE when file descriptors run out,
    ENOBUFS, ECONNABORTED) or a failed hand-off (``on_accept`` raising, e.g. no thread can be started) is
    logged, counted in ``counters["accept_errors"]`` and survived. After a failed accept the loop pauses,
    50 ms doubling up to 1 s, because the connection that could not be accepted stays in the backlog and
    would make the next accept fail at once, over and over.
    """
    host, port = listener.getsockname()[:2]
    where = f"{host}:{port}"
    # A timeout lets close() stop this loop even where closing a listening socket does not wake accept().
    listener.settimeout(0.2)
    pause = 0.0
    while not closed.is_set():
        try:
            sock, _addr = listener.accept()
        except TimeoutError:
            continue
        except OSError as exc:
            if closed.is_set() or listener.fileno() < 0:
                break
            counters["accept_errors"] += 1
            pause = min(max(2 * pause, ACCEPT_BACKOFF_S[0]), ACCEPT_BACKOFF_S[1])
            log.warning("accept on %s failed: %s; retrying in %.2f s", where, exc, pause)
            closed.wait(pause)
            continue
        pause = 0.0
        try:
            sock.settimeout(None)
            on_accept(sock)
        except Exception:  # one connection's failure must not take the listener down with it
            counters["accept_errors"] += 1
            log.exception("could not serve a connection accepted on %s", where)
            sock.close()


def close_listener(listener: socket.socket) -> None:
    """Stop listening now: shutdown first, because close() alone leaves the socket accepting connections
    until a thread blocked in accept() on it returns."""
    try:
        listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener.close()


# --- Transport server ----------------------------------------------------------------------------------------


class _Stream:
    """One open service stream; its thread runs the service, the connection thread feeds it."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int):
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self.acked = threading.Event()
        self.closed = threading.Event()
        self._pending = b""

    def write(self, data: bytes) -> None:
        """Send ``data`` in WRTE messages, each waiting for the peer's OKAY (one write in flight)."""
        view = memoryview(data)
        step = self.conn.max_payload
        for start in range(0, len(view), step):
            if self.closed.is_set():
                raise ConnectionError("stream closed by peer")
            self.acked.clear()
            self.conn.send(A_WRTE, self.local_id, self.remote_id, bytes(view[start:start + step]))
            while not self.acked.wait(0.2):
                if self.closed.is_set() or not self.conn.alive:
                    raise ConnectionError("stream closed while waiting for OKAY")

    def read_exact(self, n: int) -> bytes:
        """Read ``n`` bytes the host wrote to this stream (raises ConnectionError when it closes first)."""
        while len(self._pending) < n:
            chunk = self.inbox.get()
            if chunk is None:
                raise ConnectionError("stream closed by peer")
            self._pending += chunk
        data, self._pending = self._pending[:n], self._pending[n:]
        return data

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.conn.streams.pop(self.local_id, None)
            self.conn.last_activity = time.monotonic()  # the idle clock starts when the last stream ends
            self.conn.send(A_CLSE, self.local_id, self.remote_id)


class _Connection:
    """One TCP connection from an adb server: a reader thread plus one thread per open stream."""

    def __init__(self, server: VirtualAdbd, sock: socket.socket):
        self.server = server
        self.sock = sock
        # Bounds every send: a peer that stops reading cannot hold a stream thread (and the send lock) forever.
        sock.settimeout(server.io_timeout)
        self.alive = True
        self.connected = False  # set by the host's CNXN; nothing else is accepted before it
        self.last_activity = time.monotonic()
        self.version = A_VERSION
        self.max_payload = 4096
        self.streams: dict[int, _Stream] = {}
        self._send_lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, name="adbd-conn", daemon=True)

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        message = pack_message(command, arg0, arg1, data, checksum=self.version < A_VERSION)
        with self._send_lock:
            if not self.alive:
                raise ConnectionError("connection closed")
            try:
                self.sock.sendall(message)
            except OSError:
                self.shutdown()  # a half-sent message leaves the byte stream unusable
                raise

    def shutdown(self) -> None:
        self.alive = False
        for stream in list(self.streams.values()):
            stream.closed.set()
            stream.inbox.put(None)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _serve(self) -> None:
        server = self.server
        handshake_deadline = time.monotonic() + server.io_timeout
        try:
            while self.alive:
                if self.connected:
                    self._wait_for_message()
                # A message, once started, must arrive whole within io_timeout: no byte-a-minute peers.
                deadline = time.monotonic() + server.io_timeout if self.connected else handshake_deadline
                command, arg0, arg1, data = read_message(self.sock, deadline)
                self.last_activity = time.monotonic()
                server.wait_while_hung()
                if not self.alive:
                    break
                self._handle(command, arg0, arg1, data)
        except TimeoutError as exc:
            server.counters["timeouts"] += 1
            log.info("adbd closes a connection: %s", exc)
        except ProtocolError as exc:
            server.counters["protocol_errors"] += 1
            log.warning("adbd closes a connection: %s", exc)
        except (OSError, ConnectionError) as exc:
            log.debug("adbd connection ended: %s", exc)
        finally:
            self.shutdown()
            server.forget(self)

    def _wait_for_message(self) -> None:
        """Block until the host starts its next message.

        Raises:
            TimeoutError: no stream was open and the host sent nothing for ``idle_timeout`` seconds. An open
                stream keeps the connection alive however quiet it is (``shell:sleep 60`` is not idle).
        """
        idle_timeout = self.server.idle_timeout
        while True:
            wait = idle_timeout
            if idle_timeout is not None and not self.streams:
                wait = self.last_activity + idle_timeout - time.monotonic()
                if wait <= 0:
                    raise TimeoutError(f"idle for {idle_timeout:g} s with no stream open")
            if _wait_readable(self.sock, wait):
                return

    def _handle(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            self.version = max(A_VERSION_MIN, min(arg0, A_VERSION))
            self.max_payload = max(4096, min(arg1, MAX_PAYLOAD))
            self.connected = True
            self.send(A_CNXN, self.version, self.max_payload, self.server.banner())
        elif not self.connected:
            # adbd ignores a stream before the handshake; a peer that sends one is not an adb host.
            raise ProtocolError(f"command {command:#x} before CNXN")
        elif command == A_OPEN:
            service = data.rstrip(b"\x00").decode("utf-8", errors="replace")
            self._open(arg0, service)
        elif command == A_WRTE:
            stream = self.streams.get(arg1)
            if stream is None:
                self.send(A_CLSE, 0, arg0)
                return
            stream.inbox.put(data)
            self.send(A_OKAY, stream.local_id, stream.remote_id)
        elif command == A_OKAY:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.acked.set()
        elif command == A_CLSE:
            stream = self.streams.pop(arg1, None)
            if stream is not None:
                stream.closed.set()
                stream.inbox.put(None)
        else:  # AUTH/STLS/SYNC are never needed by a host that got our CNXN; anything else is a bug
            raise ProtocolError(f"unexpected command {command:#x}")

    def _open(self, remote_id: int, service: str) -> None:
        runner = self.server.service_runner(service)
        if runner is None or len(self.streams) >= MAX_STREAMS:
            self.send(A_CLSE, 0, remote_id)  # refused, as adbd refuses a service it cannot start
            return
        stream = _Stream(self, self.server.next_stream_id(), remote_id)
        thread = threading.Thread(target=self._run_service, args=(runner, stream), name=f"adbd-{service[:20]}",
                                  daemon=True)
        self.streams[stream.local_id] = stream
        self.send(A_OKAY, stream.local_id, remote_id)
        try:
            thread.start()
        except RuntimeError as exc:  # no thread to spare: this stream fails, the connection lives on
            log.warning("adbd cannot start %r: %s", service, exc)
            stream.close()

    def _run_service(self, runner: Callable[[_Stream], None], stream: _Stream) -> None:
        try:
            runner(stream)
        except (OSError, ConnectionError) as exc:
            log.debug("adbd stream %d ended: %s", stream.local_id, exc)
        try:
            stream.close()
        except (OSError, ConnectionError):
            pass


class VirtualAdbd:
    """The server handle :func:`serve` returns: listening socket, connections, fault switches.

    Args:
        sim: The simulated phone to serve.
        host: Listening address.
        port: Listening TCP port; 0 picks a free one.
        adb_keyboard: Pretend the ADBKeyboard input method is installed.
        max_connections: Connections served at once; more are closed as soon as they are accepted. An adb
            server keeps one connection per device, so the default leaves room for many servers and tools.
        io_timeout: Seconds a connection may take to send its ``CNXN`` after connecting, to finish any message
            it has started, and that one send to it may block.
        idle_timeout: Close a connection that has no open stream and sent nothing for this many seconds.
            None (the default) keeps it: an adb server holds its connection open while the device is idle
            and, for an emulator it was told about, does not connect again once it is closed.

    Attributes:
        sim: The simulated phone being served.
        shell: The :class:`SimShell` that runs commands on it.
        host: Listening address.
        port: Listening TCP port (the actual one when 0 was asked).
        serial: What ``adb connect`` calls this device: ``"host:port"``.
        counters: Since construction: ``accept_errors`` (failed accepts and hand-offs), ``refused``
            (connections over ``max_connections``), ``timeouts`` (connections closed by ``io_timeout`` or
            ``idle_timeout``), ``protocol_errors`` (connections closed for invalid messages).
    """

    def __init__(self, sim: Any, host: str = "127.0.0.1", port: int = 0, adb_keyboard: bool = True,
                 max_connections: int = 32, io_timeout: float = 10.0, idle_timeout: float | None = None):
        if max_connections < 1 or io_timeout <= 0 or (idle_timeout is not None and idle_timeout <= 0):
            raise ValueError("max_connections must be >= 1 and io_timeout, idle_timeout > 0")
        self.sim = sim
        self.shell = SimShell(sim, adb_keyboard=adb_keyboard)
        self.max_connections = max_connections
        self.io_timeout = io_timeout
        self.idle_timeout = idle_timeout
        self.counters = {"accept_errors": 0, "refused": 0, "timeouts": 0, "protocol_errors": 0}
        self._listener = socket.create_server((host, port))
        self.host, self.port = host, self._listener.getsockname()[1]
        self.serial = f"{host}:{self.port}"
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closed = threading.Event()
        self._answering = threading.Event()
        self._answering.set()
        self._dropping = False
        self._accept_thread = threading.Thread(
            target=accept_loop, args=(self._listener, self._closed, self._accept, self.counters),
            name="adbd-accept", daemon=True)
        self._accept_thread.start()

    # -- fault injection -----------------------------------------------------------------------------------
    def hang(self) -> None:
        """Stop answering: connections stay open but no message is processed (a wedged device)."""
        self._answering.clear()

    def drop(self) -> None:
        """Close every connection and refuse new ones until :meth:`resume` (a device that went away)."""
        self._dropping = True
        self._close_connections()

    def resume(self) -> None:
        """Undo :meth:`hang` and :meth:`drop`."""
        self._dropping = False
        self._answering.set()

    def wait_while_hung(self) -> None:
        while not self._answering.wait(0.2):
            if self._closed.is_set():
                return

    # -- lifecycle ----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop listening and close every connection (the device dies). Safe to call twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._answering.set()
        close_listener(self._listener)
        self._accept_thread.join(timeout=2)
        self._close_connections()

    def __enter__(self) -> VirtualAdbd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            conn.shutdown()

    def forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _accept(self, sock: socket.socket) -> None:
        if self._dropping:
            sock.close()
            return
        with self._lock:
            conn = _Connection(self, sock) if len(self._connections) < self.max_connections else None
            if conn is not None:
                self._connections.add(conn)
        if conn is None:
            self.counters["refused"] += 1
            log.warning("adbd %s refuses a connection: %d already open", self.serial, self.max_connections)
            sock.close()
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn.thread.start()
        except BaseException:
            self.forget(conn)
            raise

    # -- services -----------------------------------------------------------------------------------------
    def next_stream_id(self) -> int:
        return next(self._ids)

    def banner(self) -> bytes:
        props = self.sim.props
        fields = [f"{key}={props.get(key, default)}" for key, default in (
            ("ro.product.name", "mobilesim"), ("ro.product.model", "MobileSim"), ("ro.product.device", "mobilesim"))]
        return ("device::" + ";".join(fields) + ";features=" + ",".join(FEATURES)).encode()

    def service_runner(self, service: str) -> Callable[[_Stream], None] | None:
        """The function that serves ``service`` on a stream, or None for services we do not offer."""
        if service.startswith("shell,") or service.startswith("shell:"):
            head, _, command = service.partition(":")
            options = head.split(",")[1:]
            if "v2" in options:
                return lambda stream: self._shell_v2(stream, command)
            return lambda stream: self._shell_v1(stream, command)
        if service.startswith("exec:"):
            return lambda stream: self._shell_v1(stream, service[len("exec:"):])
        if service == "sync:":
            return self._sync
        return None

    def _shell_v1(self, stream: _Stream, command: str) -> None:
        if not command.strip():
            self._interactive(stream, v2=False)
            return
        result = self.shell.run(command)
        stream.write(result.stdout + result.stderr)

    def _shell_v2(self, stream: _Stream, command: str) -> None:
        if not command.strip():
            self._interactive(stream, v2=True)
            return
        result = self.shell.run(command)
        stream.write(_v2_packet(SHELL_STDOUT, result.stdout) + _v2_packet(SHELL_STDERR, result.stderr)
                     + _v2_packet(SHELL_EXIT, bytes([result.status & 0xFF])))

    def _interactive(self, stream: _Stream, v2: bool) -> None:
        """``adb shell`` with no command: run each line the host types, until ``exit`` or end of input."""
        buffer = b""
        status = 0
        while True:
            if v2:
                kind, data = _read_v2_packet(stream)
                if kind == SHELL_CLOSE_STDIN:
                    break
                if kind != SHELL_STDIN:
                    continue
            else:
                data = stream.inbox.get()
                if data is None:
                    return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                text = line.decode("utf-8", errors="replace").strip()
                if text.split()[:1] == ["exit"]:
                    status = int(text.split()[1]) if len(text.split()) > 1 and text.split()[1].isdigit() else 0
                    if v2:
                        stream.write(_v2_packet(SHELL_EXIT, bytes([status & 0xFF])))
                    return
                result = self.shell.run(text)
                status = result.status
                if v2:
                    stream.write(_v2_packet(SHELL_STDOUT, result.stdout) + _v2_packet(SHELL_STDERR, result.stderr))
                else:
                    stream.write(result.stdout + result.stderr)
        if v2:
            stream.write(_v2_packet(SHELL_EXIT, bytes([status & 0xFF])))

    def _sync(self, stream: _Stream) -> None:
        """The file-transfer service: requests are ``id(4) + length(4) + payload`` (AOSP SYNC.TXT)."""
        files = self.sim.files
        while True:
            request, length = struct.unpack("<4sI", stream.read_exact(8))
            if request == b"QUIT":
                return
            if length > 1024:
                stream.write(_sync_fail("path too long"))
                return
            path = stream.read_exact(length).decode("utf-8", errors="replace")
            if request == b"STAT":
                if path in files:
                    stream.write(b"STAT" + struct.pack("<3I", 0o100644, len(files[path]), int(time.time())))
                elif self.shell.is_dir(path):
                    stream.write(b"STAT" + struct.pack("<3I", 0o40771, 4096, int(time.time())))
                else:
                    stream.write(b"STAT" + bytes(12))
            elif request == b"LIST":
                out = bytearray()
                for name in self.shell.list_dir(path):
                    full = path.rstrip("/") + "/" + name
                    size = len(files.get(full, b""))
                    mode = 0o100644 if full in files else 0o40771
                    raw = name.encode()
                    out += b"DENT" + struct.pack("<4I", mode, size, int(time.time()), len(raw)) + raw
                stream.write(bytes(out) + b"DONE" + bytes(16))
            elif request == b"RECV":
                data = files.get(path)
                if data is None:
                    stream.write(_sync_fail(f"remote object '{path}' does not exist"))
                    continue
                out = bytearray()
                for start in range(0, len(data), SYNC_DATA_MAX):
                    chunk = data[start:start + SYNC_DATA_MAX]
                    out += b"DATA" + struct.pack("<I", len(chunk)) + chunk
                stream.write(bytes(out) + b"DONE" + bytes(4))
            elif request == b"SEND":
                target = path.rsplit(",", 1)[0] if "," in path else path
                chunks = []
                while True:
                    kind, size = struct.unpack("<4sI", stream.read_exact(8))
                    if kind == b"DONE":
                        break
                    if kind != b"DATA" or size > SYNC_DATA_MAX:
                        stream.write(_sync_fail(f"unexpected {kind!r} in SEND"))
                        return
                    chunks.append(stream.read_exact(size))
                files[target] = b"".join(chunks)
                stream.write(b"OKAY" + bytes(4))
            else:
                stream.write(_sync_fail(f"unknown sync request {request!r}"))
                return


def _v2_packet(kind: int, data: bytes) -> bytes:
    return struct.pack("<BI", kind, len(data)) + data if data or kind == SHELL_EXIT else b""


def _read_v2_packet(stream: _Stream) -> tuple[int, bytes]:
    kind, length = struct.unpack("<BI", stream.read_exact(5))
    return kind, stream.read_exact(length) if length else b""


def _sync_fail(message: str) -> bytes:
    raw = message.encode()
    return b"FAIL" + struct.pack("<I", len(raw)) + raw


def serve(sim: Any, host: str = "127.0.0.1", port: int = 0, adb_keyboard: bool = True, max_connections: int = 32,
          io_timeout: float = 10.0, idle_timeout: float | None = None) -> VirtualAdbd:
    """Serve ``sim`` over the ADB transport protocol on ``host:port`` (0 picks a free port).

    Args:
        sim: The ``MobileSim`` to serve.
        host: Address to listen on; keep it on loopback (adbd has no authentication here).
        port: TCP port; the returned handle's ``.port`` is the real one.
        adb_keyboard: Pretend the ADBKeyboard input method is installed (for unicode text entry).
        max_connections: Connections served at once (see :class:`VirtualAdbd`).
        io_timeout: Seconds for the handshake, for each message once started, and for each send.
        idle_timeout: Close connections with no open stream that stay silent this long; None keeps them.

    Returns:
        The running server; call ``.close()`` (or use it as a context manager) to stop it.
    """
    return VirtualAdbd(sim, host=host, port=port, adb_keyboard=adb_keyboard, max_connections=max_connections,
                       io_timeout=io_timeout, idle_timeout=idle_timeout)

