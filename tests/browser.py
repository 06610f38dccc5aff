"""Headless Chromium for tests: render a local HTML page as a person's browser would.

`render` opens the page from disk (file://) in Debian's `chromium`, driven through the
DevTools protocol over `--remote-debugging-pipe` (fds 3 and 4, NUL-terminated JSON), with the
standard library only. After the load event (and a turn of the event loop) it reads the DOM
as the page's scripts left it and, for every <img>, what the browser decoded
(naturalWidth/naturalHeight/complete): things `--dump-dom` cannot report. The browser runs in
its own session (process group) with a private profile in a temp dir; every exit path kills
that group, so no Chromium process outlives a call.

Tests that need it are marked `@requires_chromium`: skipped, with how to install it, where
Chromium is missing (CI installs it in .ci/run).
"""
import base64
import dataclasses
import fcntl
import html.parser
import json
import os
import pathlib
import select
import shutil
import signal
import tempfile
import time
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FALLBACK = "/usr/bin/chromium"
WINDOW_SIZE = (1400, 2000)
STOP_S = 5  # the most to wait for the browser's processes to die once killed
INSTALL_HINT = ("needs headless Chromium: apt-get update && apt-get install -y chromium "
                "(.ci/run installs it in CI)")
SRC_PREFIX = 64  # characters of an image's src kept in Rendered.images (data: URLs are long)

FLAGS = (
  "--headless",
  "--no-sandbox",  # CI and the developers' machines run as root
  "--disable-gpu",
  "--no-zygote",  # renderers are the browser's own children, reaped by it: no zombies for init
  "--disable-dev-shm-usage",
  "--remote-debugging-pipe",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-extensions",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-default-apps",
  "--disable-breakpad",
  "--mute-audio",
  "--hide-scrollbars",
  "--force-color-profile=srgb",
)

# Evaluated in the page once it has loaded: the DOM as scripts left it and what each image decoded.
_SNAPSHOT_JS = """(() => ({
  dom: (document.doctype ? new XMLSerializer().serializeToString(document.doctype) : '')
       + document.documentElement.outerHTML,
  images: Array.from(document.images, (img) => ({
    src: img.currentSrc || img.src, alt: img.alt, complete: img.complete,
    natural_width: img.naturalWidth, natural_height: img.naturalHeight})),
}))()"""
_SETTLE_JS = "new Promise((resolve) => setTimeout(resolve, 0))"


def find_chromium() -> str | None:
  """The Chromium (or Chrome) binary on PATH, else /usr/bin/chromium, else None."""
  for name in CHROMIUM_NAMES:
    path = shutil.which(name)
    if path:
      return path
  return CHROMIUM_FALLBACK if os.access(CHROMIUM_FALLBACK, os.X_OK) else None


requires_chromium = pytest.mark.skipif(find_chromium() is None, reason=INSTALL_HINT)


@dataclasses.dataclass(frozen=True)
class Rendered:
  """A page as Chromium rendered it.

  Attributes:
    url: the file:// URL that was loaded.
    dom: the document's HTML after its scripts ran (doctype + documentElement.outerHTML).
    tables: each <table> of `dom` in document order, as rows of cell texts (whitespace collapsed).
    images: for each <img>: src (its first SRC_PREFIX characters), alt, complete,
      natural_width and natural_height (0 for an image that did not decode).
    js_errors: uncaught exceptions and console.error messages, in order.
    requests: every URL the page requested other than data: URLs (the page's own URL first).
    screenshot: where the screenshot was written, or None.
    script_result: the value of `render`'s script (awaited if a promise), or None.
  """
  url: str
  dom: str
  tables: list
  images: list
  js_errors: list
  requests: list
  screenshot: str | None = None
  script_result: Any = None

  @property
  def broken_images(self) -> list:
    """The images that did not decode (natural width 0)."""
    return [img for img in self.images if not img["natural_width"]]


def render(html_path, screenshot_path=None, timeout_s: float = 60,
           window_size=WINDOW_SIZE, script: str | None = None,
           full_page: bool = False) -> Rendered:
  """Loads a local page in headless Chromium and reads it back once it has loaded.

  Args:
    html_path: the page, on disk.
    screenshot_path: where to write a PNG of the viewport, or None for no screenshot.
    timeout_s: the limit for loading and reading the page; the browser is killed when it runs
      out (making sure its processes are dead can take up to STOP_S more).
    window_size: (width, height) of the viewport in CSS pixels.
    script: a JS expression evaluated once the page has loaded (a promise is awaited), before
      the DOM is read and the screenshot taken: e.g. clicks that the snapshot should see. An
      exception it throws raises RuntimeError.
    full_page: screenshot the whole page (its full height) rather than the viewport.

  Returns:
    The Rendered page.

  Raises:
    FileNotFoundError: no such page, or no Chromium.
    TimeoutError: the browser did not finish within timeout_s (it has been killed).
    RuntimeError: the browser exited or reported an error (its log's tail is in the message).
  """
  path = pathlib.Path(html_path).resolve()
  if not path.is_file():
    raise FileNotFoundError(path)
  binary = find_chromium()
  if binary is None:
    raise FileNotFoundError(INSTALL_HINT)
  deadline = time.monotonic() + timeout_s
  with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as tmp:
    browser = _Browser(binary, tmp, window_size, deadline)
    try:
      return _load(browser, path.as_uri(), screenshot_path, window_size, script, full_page)
    finally:
      browser.close()


def _load(browser, url: str, screenshot_path, window_size, script=None,
          full_page=False) -> Rendered:
  """Opens url in a new tab of browser and reads the Rendered page from it."""
  session = browser.open_tab()
  for method in ("Page.enable", "Runtime.enable", "Network.enable"):
    browser.call(method, session=session)
  browser.call("Page.setLifecycleEventsEnabled", {"enabled": True}, session)
  width, height = window_size
  browser.call("Emulation.setDeviceMetricsOverride",
               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
  nav = browser.call("Page.navigate", {"url": url}, session)
  if nav.get("errorText"):
    raise RuntimeError(f"loading {url}: {nav['errorText']}")
  browser.wait_event(lambda e: e["method"] == "Page.lifecycleEvent"
                     and e["params"]["name"] == "load"
                     and e["params"]["loaderId"] == nav["loaderId"], session)
  _evaluate(browser, _SETTLE_JS, session)  # what load handlers deferred with setTimeout(0)
  script_result = None
  if script is not None:
    script_result = _evaluate(browser, script, session)
    _evaluate(browser, _SETTLE_JS, session)
  snapshot = _evaluate(browser, _SNAPSHOT_JS, session)
  if screenshot_path is not None:
    _screenshot(browser, session, screenshot_path, full_page)
  rendered = _rendered(url, snapshot, browser.events_of(session), screenshot_path)
  return dataclasses.replace(rendered, script_result=script_result)


def _evaluate(browser, expression: str, session):
  """The value of a JS expression in the page (awaited if a promise)."""
  result = browser.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                             "returnByValue": True}, session)
  if "exceptionDetails" in result:
    raise RuntimeError(f"evaluating in the page: {_exception_text(result['exceptionDetails'])}")
  return result["result"].get("value")


def _screenshot(browser, session, screenshot_path, full_page: bool = False) -> None:
  """Writes a PNG of the page's viewport (or of the whole page) to screenshot_path."""
  params = {"format": "png"}
  if full_page:
    size = browser.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
    params.update(captureBeyondViewport=True, clip={
        "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
  shot = browser.call("Page.captureScreenshot", params, session)
  screenshot_path = pathlib.Path(screenshot_path)
  screenshot_path.parent.mkdir(parents=True, exist_ok=True)
  screenshot_path.write_bytes(base64.b64decode(shot["data"]))


def _rendered(url: str, snapshot: dict, events: list, screenshot_path) -> Rendered:
  """Rendered from the page's snapshot and the events its tab sent."""
  images = [dict(img, src=img["src"][:SRC_PREFIX]) for img in snapshot["images"]]
  return Rendered(url=url, dom=snapshot["dom"], tables=parse_tables(snapshot["dom"]),
                  images=images, js_errors=_js_errors(events), requests=_requests(events),
                  screenshot=None if screenshot_path is None else str(screenshot_path))


def _js_errors(events: list) -> list:
  """Uncaught exceptions and console.error calls, as text."""
  errors = []
  for event in events:
    if event["method"] == "Runtime.exceptionThrown":
      errors.append(_exception_text(event["params"]["exceptionDetails"]))
    elif event["method"] == "Runtime.consoleAPICalled" and event["params"]["type"] == "error":
      args = event["params"]["args"]
      errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
  return errors


def _exception_text(details: dict) -> str:
  """An exception's description from DevTools' exceptionDetails."""
  return details.get("exception", {}).get("description") or details.get("text", "")


def _requests(events: list) -> list:
  """The URLs requested, except data: URLs, once each in order."""
  urls = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
  return list(dict.fromkeys(u for u in urls if not u.startswith("data:")))


def parse_tables(dom: str) -> list:
  """Each <table> of an HTML document as rows of cell texts, in document order.

  Args:
    dom: HTML text (a nested table is a table of its own; its text is not its outer cell's).

  Returns:
    A list of tables, each a list of rows, each a list of cell texts (whitespace collapsed).
  """
  parser = _TableParser()
  parser.feed(dom)
  parser.close()
  return parser.tables


class _TableParser(html.parser.HTMLParser):
  """Collects tables' rows of cell texts; the text of <script>/<style> is left out."""

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.tables = []
    self._open = []  # per open table: {"rows": [...], "cell": list of text pieces or None}
    self._skip = 0

  def handle_starttag(self, tag, attrs):
    if tag in ("script", "style"):
      self._skip += 1
    elif tag == "table":
      table = {"rows": [], "cell": None}
      self.tables.append(table["rows"])
      self._open.append(table)
    elif self._open and tag == "tr":
      self._open[-1]["rows"].append([])
    elif self._open and tag in ("td", "th"):
      self._end_cell()
      if not self._open[-1]["rows"]:
        self._open[-1]["rows"].append([])
      self._open[-1]["cell"] = []

  def handle_endtag(self, tag):
    if tag in ("script", "style"):
      self._skip = max(0, self._skip - 1)
    elif tag == "table" and self._open:
      self._end_cell()
      self._open.pop()
    elif self._open and tag in ("td", "th", "tr"):
      self._end_cell()

  def handle_data(self, data):
    if self._open and self._open[-1]["cell"] is not None and not self._skip:
      self._open[-1]["cell"].append(data)

  def _end_cell(self):
    table = self._open[-1]
    if table["cell"] is not None:
      table["rows"][-1].append(" ".join("".join(table["cell"]).split()))
      table["cell"] = None


class _Browser:
  """A headless Chromium process and its DevTools pipe, bounded by a deadline."""

  def __init__(self, binary: str, profile_dir: str, window_size, deadline: float):
    self.deadline = deadline
    self.profile_dir = profile_dir
    self.log_path = os.path.join(profile_dir, "chromium.log")
    self._events = []
    self._buffer = bytearray()
    self._next_id = 0
    width, height = window_size
    argv = [binary, *FLAGS, f"--user-data-dir={os.path.join(profile_dir, 'profile')}",
            f"--window-size={width},{height}", "about:blank"]
    self.pid, self._to_browser, self._from_browser = _spawn(argv, _env(profile_dir), self.log_path)

  def open_tab(self) -> str:
    """A new tab, attached: the session id to send its commands with."""
    target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    return self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

  def call(self, method: str, params=None, session=None) -> dict:
    """Sends a command and returns its result, keeping the events that arrive meanwhile."""
    self._next_id += 1
    message = {"id": self._next_id, "method": method, "params": params or {}}
    if session:
      message["sessionId"] = session
    self._write(json.dumps(message).encode() + b"\0")
    while True:
      reply = self._read_message()
      if reply.get("id") == message["id"]:
        if "error" in reply:
          raise RuntimeError(f"{method}: {reply['error']}{self._log_tail()}")
        return reply.get("result", {})
      if "method" in reply:
        self._events.append(reply)

  def wait_event(self, predicate, session) -> dict:
    """The first event of the session (received already or next) that predicate accepts."""
    seen = 0
    while True:
      for event in self._events[seen:]:
        if event.get("sessionId") == session and predicate(event):
          return event
      seen = len(self._events)
      reply = self._read_message()
      if "method" in reply:
        self._events.append(reply)

  def events_of(self, session) -> list:
    """The events received from a session, in order."""
    return [e for e in self._events if e.get("sessionId") == session]

  def close(self, grace_s: float = 5) -> None:
    """Asks the browser to quit, then kills its process group whatever it did; closes the pipe."""
    try:
      self._write(json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
    except OSError:
      pass
    _stop(self.pid, self.profile_dir, min(grace_s, max(0.0, self.deadline - time.monotonic())))
    os.close(self._to_browser)
    os.close(self._from_browser)

  def _write(self, data: bytes) -> None:
    view = memoryview(data)
    while view:
      view = view[os.write(self._to_browser, view):]

  def _read_message(self) -> dict:
    """The next NUL-terminated JSON message from the browser, within the deadline."""
    while (end := self._buffer.find(b"\0")) < 0:
      left = self.deadline - time.monotonic()
      if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
        raise TimeoutError(f"Chromium did not answer in time{self._log_tail()}")
      chunk = os.read(self._from_browser, 1 << 20)
      if not chunk:
        raise RuntimeError(f"Chromium closed its DevTools pipe (exited?){self._log_tail()}")
      self._buffer += chunk
    message = bytes(self._buffer[:end])
    del self._buffer[:end + 1]
    return json.loads(message)

  def _log_tail(self, chars: int = 2000) -> str:
    try:
      return "\nChromium's log ends:\n" + pathlib.Path(self.log_path).read_text(errors="replace")[-chars:]
    except OSError:
      return ""


def _env(profile_dir: str) -> dict:
  """The environment with XDG folders in profile_dir: nothing is written to $HOME, and the crash
  handlers, which start sessions of their own, carry profile_dir in their command lines."""
  env = dict(os.environ)
  for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
    env[name] = os.path.join(profile_dir, name.lower())
  return env


def _spawn(argv: list, env: dict, log_path: str):
  """Starts argv in a new session with the DevTools pipe on fds 3 (in) and 4 (out).

  posix_spawn, not fork + preexec_fn: safe in a test process that runs threads (JAX's).

  Returns:
    (pid, fd to write commands to, fd to read replies and events from).
  """
  to_browser_r, to_browser_w = os.pipe()
  from_browser_r, from_browser_w = os.pipe()
  # Above the fds the child gets, so that placing them on 3 and 4 overwrites neither.
  high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
  high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
  actions = [
    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
    (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    (os.POSIX_SPAWN_DUP2, 1, 2),
    (os.POSIX_SPAWN_DUP2, high_r, 3),
    (os.POSIX_SPAWN_DUP2, high_w, 4),
  ]
  try:
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
  finally:
    for fd in (to_browser_r, from_browser_w, high_r, high_w):
      os.close(fd)
  return pid, to_browser_w, from_browser_r


def _stop(pid: int, marker: str, grace_s: float) -> None:
  """Waits up to grace_s for the browser to exit, then kills whatever is left of it.

  Its exit is noticed without reaping it (WNOWAIT): until reaped, pid stays its group's id,
  so killpg cannot reach anyone else's processes.

  Args:
    pid: the browser's process id, also its session's and process group's.
    marker: text in the command line of each other process it started (its profile folder).
    grace_s: how long it may take to quit by itself.
  """
  end = time.monotonic() + grace_s
  while time.monotonic() < end and not _exited(pid):
    time.sleep(0.02)
  try:
    os.killpg(pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
  os.waitpid(pid, 0)
  _kill_leftovers(pid, marker, STOP_S)


def _exited(pid: int) -> bool:
  """Whether pid has exited (it is left to reap)."""
  return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_leftovers(pgid: int, marker: str, timeout_s: float) -> None:
  """Kills, until none is left alive or timeout_s has passed, the browser's other processes."""
  end = time.monotonic() + timeout_s
  while (pids := _live_processes(pgid, marker.encode())) and time.monotonic() < end:
    for pid in pids:
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
    time.sleep(0.02)


def _live_processes(pgid: int, marker: bytes) -> list:
  """Live (not zombie) processes of group pgid, or whose command line contains marker."""
  pids = []
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat", "rb") as f:
        state, _, group = f.read().rsplit(b")", 1)[1].split()[:3]
      with open(f"/proc/{entry}/cmdline", "rb") as f:
        cmdline = f.read()
    except OSError:
      continue  # gone meanwhile
    if state not in (b"Z", b"X") and (int(group) == pgid or marker in cmdline):
      pids.append(int(entry))
  return pids
