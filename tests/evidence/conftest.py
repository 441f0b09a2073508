"""A real headless Chromium for the report's browser check, driven over the DevTools protocol.

Chromium is started with `--remote-debugging-pipe`: it reads commands from file descriptor 3
and writes replies and events to 4, each a JSON message ended by a NUL byte (the pipe
Puppeteer uses). That needs no driver and no package beyond the browser itself. The browser is
the one `$CHROMIUM` names, else `chromium` (Debian's), `chromium-browser` or `google-chrome` on
PATH. Without one the browser tests skip, unless `$CHROMIUM` is set: then CI meant it to run.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe",
)  # fmt: skip
COMMANDS_FD, REPLIES_FD = 3, 4  # where Chromium reads commands and writes replies
REPLY_TIMEOUT_S = 60


class Chromium:
    """One headless Chromium with one page, driven by DevTools commands."""

    def __init__(self, binary: str, profile: Path, width: int, height: int) -> None:
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        def at_fixed_fds() -> None:  # in the child: the pipes' ends at fds 3 and 4
            ends = os.dup(commands_read), os.dup(replies_write)  # off 3 and 4 first
            os.dup2(ends[0], COMMANDS_FD)
            os.dup2(ends[1], REPLIES_FD)

        self._process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(COMMANDS_FD, REPLIES_FD),
            preexec_fn=at_fixed_fds,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(replies_write)
        self._pending = b""
        self._last_id = 0
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.send("Emulation.setDeviceMetricsOverride", self._session, width=width,
                  height=height, deviceScaleFactor=1, mobile=False)  # fmt: skip

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events in between are passed over)."""
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._next_message()
            if reply.get("id") == self._last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _next_message(self) -> dict[str, Any]:
        while b"\0" not in self._pending:
            ready, _, _ = select.select([self._replies], [], [], REPLY_TIMEOUT_S)
            chunk = os.read(self._replies, 1 << 16) if ready else b""
            if not chunk:
                raise RuntimeError("Chromium stopped answering")
            self._pending += chunk
        message, self._pending = self._pending.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> None:
        """Load `url` and wait until the page and its images have loaded."""
        self.send("Page.navigate", self._session, url=url)
        self.evaluate(
            "new Promise(done => document.readyState === 'complete' ? done(true)"
            " : addEventListener('load', () => done(true)))"
        )

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        reply = self.send("Runtime.evaluate", self._session, expression=expression,
                          returnByValue=True, awaitPromise=True)  # fmt: skip
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"]["value"]

    def screenshot(self) -> bytes:
        """What the viewport shows, as PNG."""
        return base64.b64decode(self.send("Page.captureScreenshot", self._session)["data"])

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # it may close its pipe before it answers
            self.send("Browser.close")
        self._process.wait(timeout=REPLY_TIMEOUT_S)
        os.close(self._commands)
        os.close(self._replies)


def browser_binary() -> str | None:
    given = os.environ.get("CHROMIUM")
    if given:
        return given
    return next((path for name in BROWSER_NAMES if (path := shutil.which(name))), None)


@pytest.fixture
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    """A headless Chromium showing a 1280 x 900 viewport (a laptop's first screen)."""
    binary = browser_binary()
    if binary is None:
        names = ", ".join(BROWSER_NAMES)
        pytest.skip(f"no browser: install Debian's chromium, or set CHROMIUM (tried {names})")
    browser = Chromium(binary, tmp_path_factory.mktemp("chromium-profile"), 1280, 900)
    yield browser
    browser.close()
