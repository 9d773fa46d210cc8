"""The browser's reaper: a tiny process that kills the browser's whole process group when its owner dies.

``python -m guiagent.envs.web.reaper`` is started by :class:`~guiagent.envs.web.browser.Browser` as the leader
of a new process group, with a pipe on its standard input whose only writer is the owning process.
chromedriver (and so Chromium and every helper process Chromium forks) joins that group. The reaper blocks
reading the pipe; the read returns end-of-file as soon as the owner closes it or dies in any way, SIGKILL
included, and the reaper then SIGKILLs the group, itself last. No signal handler or polling is involved, so
nothing the owner does (or fails to do) can leave a browser behind.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    # Ctrl-C in a terminal or a SIGTERM meant for the worker must not take the reaper down before the browser.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    os.killpg(os.getpgrp(), signal.SIGKILL)


if __name__ == "__main__":
    main()
