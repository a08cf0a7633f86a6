"""Run the notebooks in a real browser: `make test-browser` (opt-in, not part of `make test`; issue 13).

Usage: python tools/test_browser.py [--screenshots DIR] [--timeout S] [--chromium PATH] notebooks/01_....ipynb [...]

Starts the course's JupyterLab (tools/lab.py's flags) on a random loopback port with a token, on copies of the
notebooks (outputs cleared) in a temporary folder, so the notebooks themselves are never written. Each copy is
opened in headless Chromium through Playwright, and Run > Restart Kernel and Run All Cells is clicked in the page.
When every cell has run, the page must show:

- no error output (JupyterLab 4 gives errors no class of their own: a traceback is rendered like any stderr text,
  `.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]`, so errors are read from the notebook's
  model, output_type "error", and any stderr output that holds a traceback counts too);
- every code cell run (none left unexecuted after an error or a timeout);
- as many figures drawn as <img> in each cell as the committed notebook has image outputs there;
- progress bars drawn as ipywidgets where the committed notebook has tqdm text bars or the cell calls
  lorautil.tqdm (tqdm.auto, used by lorautil, draws a widget in JupyterLab), no "Error displaying widget", no tqdm
  text fallback; a cell that calls tqdm's plain text bar itself (`from tqdm import tqdm`, notebook 02) must show
  its text bar instead;
- no errors in the browser's console (but for the commented allow-list ALLOWED_CONSOLE_ERRORS).

One line per notebook with its verdict and time; a full-page screenshot of each goes to --screenshots
(default browser-screenshots/). Exits with 1 if any notebook fails, 2 if Playwright or Chromium is missing.
Needs `pip install -r requirements-browser.txt` and a system Chromium (Debian: `apt-get install -y chromium`).
"""
import argparse
import ast
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import lab_arguments  # noqa: E402  (tools/lab.py: the flags `make lab` uses)
from run_notebooks import PROGRESS_BAR  # noqa: E402  (tqdm's text bar, as `make run` recognises it)

DEFAULT_SCREENSHOTS = "browser-screenshots"
DEFAULT_TIMEOUT = 600.0  # seconds per notebook; the slowest takes about 90 s alone on the course's 2-core CPU

# Where Chromium is looked for when neither --chromium nor $CHROMIUM names it, in this order.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
# Headless Chromium on a server, as root and in a container. Without the background-networking flags Chromium keeps
# trying to reach Google's services, which a machine with no internet refuses, many connections at a time.
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")
VIEWPORT = {"width": 1280, "height": 900}
MAX_SCREENSHOT_HEIGHT = 60000  # pixels; a longer notebook is cut at the bottom of its screenshot

# Settings of the temporary JupyterLab user-settings folder (JUPYTERLAB_SETTINGS_DIR), by plugin.
LAB_SETTINGS = {
    # JupyterLab 4 attaches only the cells near the viewport to the page by default ("full" windowing): the checks
    # and the screenshot need every cell's outputs in the page.
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    # Never write to the copies behind the test's back (nothing is saved: the page is thrown away).
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    # No "Would you like to get notified about official Jupyter news?" toast over the screenshots, and no request
    # to jupyter.org for news or updates.
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}

# The environment the server (and so every kernel) must not inherit.
REMOVED_VARIABLES = {
    "LORAUTIL_TEXT_PROGRESS": "forces lorautil's progress bars to text; the test checks that they are widgets",
    "MPLBACKEND": "a non-inline matplotlib backend (e.g. Agg) would draw no figure in the page",
    "DISPLAY": "JupyterLab would try to open a browser of its own",
    "WAYLAND_DISPLAY": "JupyterLab would try to open a browser of its own",
}

PLAIN_TQDM_IMPORT = re.compile(r"^\s*from\s+tqdm\s+import\s+(?:.*[\s,(])?tqdm\b(?!\s+as\b)", re.MULTILINE)
PLAIN_TQDM_CALL = re.compile(r"(?<![\w.])tqdm\(")
TQDM_NO_WIDGETS = "IProgress not found"  # tqdm's warning when it falls back to text for want of ipywidgets
WIDGET_ERROR = "Error displaying widget"
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)

# Console errors that do not come from the course, each with the reason it is harmless. Matched as regular
# expressions against the message text. Keep this list short: anything not on it fails the notebook.
ALLOWED_CONSOLE_ERRORS = (
    # JupyterLab's debugger panel asks a newly started kernel for its state; restarting the kernel (which the test
    # does at once, through Run > Restart Kernel and Run All Cells) cancels that request. JupyterLab's, not the
    # course's.
    (r"^Could not restore the debugger state: Canceled future for debug_request message before replies were done$",
     "JupyterLab's debugger, interrupted by the restart the test clicks"),
)


# ---------------------------------------------------------------------------------------------------------------
# Pure parts (tests/test_browser_tool.py)

@dataclass(frozen=True)
class CellExpectation:
    """What the committed notebook says one cell shows when it runs."""
    index: int
    cell_type: str
    runs: bool  # a code cell with source: it must get an execution count
    figures: int  # image outputs in the committed notebook
    text_bars: int  # committed stderr outputs holding a tqdm text bar
    text_bar_by_design: bool  # the cell calls tqdm's plain text bar itself, so the page shows text, not a widget
    first_line: str = ""  # to name the cell in messages
    calls_progress_bar: bool = False  # lorautil.tqdm(...) called in the cell itself (not in a function it defines)

    @property
    def name(self):
        """'cell 8 `loss_fn = nn.CrossEntropyLoss()`': its index in the notebook (from 0) and its first line."""
        line = self.first_line if len(self.first_line) <= 60 else self.first_line[:57] + "..."
        return f"cell {self.index} `{line}`" if line else f"cell {self.index}"

    @property
    def progress_bar(self):
        """A bar is drawn here: the committed notebook shows one, or the cell calls lorautil.tqdm (outputs that
        predate the call, committed before `make run` ran again, would not say so)."""
        return self.text_bars > 0 or self.calls_progress_bar


def is_image_output(output):
    return output.get("output_type") in ("display_data", "execute_result") and \
        any(mime.startswith("image/") for mime in output.get("data", {}))


def text_of(value):
    return "".join(value) if isinstance(value, list) else (value or "")


def calls_lorautil_tqdm(source):
    """True if the cell's own code calls lorautil.tqdm(...); calls inside a function it only defines do not count."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython syntax (%magic, !shell): no claim
        return False
    in_functions = {id(node) for function in ast.walk(tree) if isinstance(function, FUNCTIONS)
                    for node in ast.walk(function)}
    return any(isinstance(node, ast.Call) and id(node) not in in_functions and isinstance(node.func, ast.Attribute)
               and node.func.attr == "tqdm" and isinstance(node.func.value, ast.Name)
               and node.func.value.id == "lorautil"
               for node in ast.walk(tree))


def expectations(notebook):
    """[CellExpectation] for each cell of a committed notebook (its JSON as a dict), in order."""
    code = "\n".join(text_of(c.get("source")) for c in notebook["cells"] if c["cell_type"] == "code")
    plain_tqdm = bool(PLAIN_TQDM_IMPORT.search(code))
    result = []
    for index, cell in enumerate(notebook["cells"]):
        source, outputs = text_of(cell.get("source")), cell.get("outputs", [])
        is_code = cell["cell_type"] == "code"
        bars = sum(1 for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stderr"
                   and PROGRESS_BAR.search(text_of(o.get("text"))))
        result.append(CellExpectation(
            index=index, cell_type=cell["cell_type"], runs=is_code and bool(source.strip()),
            figures=sum(1 for o in outputs if is_image_output(o)) if is_code else 0,
            text_bars=bars if is_code else 0,
            text_bar_by_design=is_code and plain_tqdm and bool(PLAIN_TQDM_CALL.search(source)),
            first_line=next((line.strip() for line in source.splitlines() if line.strip()), ""),
            calls_progress_bar=is_code and calls_lorautil_tqdm(source)))
    return result


def cleared_copy(notebook):
    """The notebook with every output and execution count removed: whatever the page shows comes from this run."""
    copy = json.loads(json.dumps(notebook))
    for cell in copy["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell.get("metadata", {}).pop("execution", None)
    return copy


def write_lab_settings(settings_dir):
    """Write LAB_SETTINGS as JupyterLab user settings under settings_dir; return the files written."""
    written = []
    for plugin, values in LAB_SETTINGS.items():
        path = Path(settings_dir) / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2) + "\n")
        written.append(path)
    return written


def server_environment(environ, work, python):
    """The environment for JupyterLab and its kernels: everything Jupyter writes or reads as a user goes to `work`."""
    env = {name: value for name, value in environ.items() if name not in REMOVED_VARIABLES}
    env.update(JUPYTERLAB_SETTINGS_DIR=str(work / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"),
               JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTER_DATA_DIR=str(work / "data"),
               JUPYTER_RUNTIME_DIR=str(work / "runtime"))
    # The kernelspec says "python": jupyter_client runs the server's own interpreter for it, the course's venv.
    env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", "")])
    return env


def server_arguments(notebook_dir, port, token, euid, platform):
    """`jupyter lab` arguments: tools/lab.py's (--allow-root as root), on notebook_dir, loopback only, no browser."""
    arguments = [f"--notebook-dir={notebook_dir}" if a.startswith("--notebook-dir=") else a
                 for a in lab_arguments([], euid, {}, platform)]
    if "--no-browser" not in arguments:
        arguments.append("--no-browser")
    return arguments + ["--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
                        f"--IdentityProvider.token={token}",
                        # window.jupyterapp: the test reads the notebook's model (outputs, kernel status) from it.
                        "--LabApp.expose_app_in_browser=True"]


def find_chromium(explicit=None, environ=None, which=shutil.which):
    """The Chromium executable to use: --chromium, else $CHROMIUM, else the first of CHROMIUM_NAMES on the PATH."""
    environ = os.environ if environ is None else environ
    named = explicit or environ.get("CHROMIUM")
    if named:
        return str(Path(named)) if Path(named).is_file() and os.access(named, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = which(name)
        if found:
            return found
    return None


def missing_message(playwright_missing, chromium_missing, named=None):
    """What to do when Playwright or Chromium is missing ('' when neither is)."""
    lines = []
    if playwright_missing:
        lines += ["Playwright (the Python package) is not installed in this environment. Install it with",
                  f"    {sys.executable} -m pip install -r requirements-browser.txt",
                  "(`make test-browser` does this itself)."]
    if chromium_missing:
        where = f"{named} is not an executable file" if named else \
            f"none of {', '.join(CHROMIUM_NAMES)} is on the PATH"
        lines += [f"Chromium was not found: {where}. Install the system's Chromium:",
                  "    sudo apt-get install -y chromium        # Debian 11 or newer, as root without sudo",
                  "or point the test at a Chromium or Chrome executable with --chromium PATH or CHROMIUM=PATH.",
                  "The test uses the system's browser because Playwright's own download (`playwright install`)",
                  "needs the internet; see docs/INSTRUCTOR_GUIDE.md, \"Testing the course in a real browser\"."]
    return "\n".join(lines)


def allowed_console_error(text, allowed=ALLOWED_CONSOLE_ERRORS):
    return any(re.search(pattern, text) for pattern, _reason in allowed)


def problems(expected, cells, page_text, console_errors):
    """Every failed check, as sentences, from what the page showed.

    expected: expectations() of the committed notebook. cells: per cell of the page, in order, a dict with type,
    count (execution count or None), errors (["Name: value"] of error outputs), stderr (stream text), tracebacks
    (stderr outputs in the page that hold a traceback), images (drawn <img>), progress_widgets (drawn progress
    widgets), widget_outputs (widget outputs in the model). page_text: the page's text. console_errors: messages.
    """
    found, not_run = [], []
    if len(cells) != len(expected):
        return [f"the page shows {len(cells)} cells, the notebook has {len(expected)}"]
    for want, got in zip(expected, cells, strict=True):
        where = want.name
        for error in got.get("errors", []):
            found.append(f"{where}: error output {error}")
        if got.get("tracebacks") and not got.get("errors"):
            found.append(f"{where}: a traceback in its stderr output")
        if want.runs and got.get("count") is None:
            not_run.append(want)
            continue
        if got.get("images", 0) < want.figures:
            found.append(f"{where}: {got.get('images', 0)} figure(s) drawn as images, the committed notebook has "
                         f"{want.figures}")
        text_bar = bool(PROGRESS_BAR.search(got.get("stderr", "")))
        if TQDM_NO_WIDGETS in got.get("stderr", ""):
            found.append(f"{where}: tqdm found no ipywidgets (\"{TQDM_NO_WIDGETS}\") and fell back to text")
        if want.text_bar_by_design:
            if want.progress_bar and not text_bar:
                found.append(f"{where}: its tqdm text bar (plain tqdm, by design) is missing")
        else:
            if text_bar:
                found.append(f"{where}: a progress bar drawn as text, not as a widget (tqdm's text fallback)")
            if want.progress_bar and got.get("progress_widgets", 0) == 0:
                why = "the committed notebook has a tqdm bar here" if want.text_bars else "it calls lorautil.tqdm"
                found.append(f"{where}: no progress bar widget drawn ({why})")
        if got.get("widget_outputs", 0) and got.get("progress_widgets", 0) + got.get("other_widgets", 0) == 0:
            found.append(f"{where}: {got['widget_outputs']} widget output(s) not drawn as widgets")
    if not_run:  # one line: after an error or a timeout, every later cell is in this list
        more = f", and {len(not_run) - 1} code cell(s) after it" if len(not_run) > 1 else ""
        found.append(f"{not_run[0].name}: did not run (no execution count){more}")
    if WIDGET_ERROR in page_text:
        found.append(f"the page says \"{WIDGET_ERROR}\"")
    for message in console_errors:
        if not allowed_console_error(message):
            found.append(f"console error: {message[:300]}")
    return found


# ---------------------------------------------------------------------------------------------------------------
# The server

def free_loopback_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base_url, token, path, method="GET"):
    request = urllib.request.Request(f"{base_url}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
        return json.loads(body) if body else None


class Server:
    """JupyterLab on a loopback port, run in its own process group; stop() ends it and its kernels."""

    def __init__(self, work, notebook_dir):
        self.port, self.token = free_loopback_port(), secrets.token_hex(24)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "jupyterlab.log"
        euid = os.geteuid() if hasattr(os, "geteuid") else None
        command = [sys.executable, "-m", "jupyter",
                   *server_arguments(notebook_dir, self.port, self.token, euid, sys.platform)]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, env=server_environment(os.environ, work, sys.executable),
                                            cwd=notebook_dir, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                api(self.base_url, self.token, "/api/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {timeout} s:\n{self.log_tail()}")

    def shut_down_kernels(self):
        """End every session's kernel, so that the next notebook has the CPU and the memory to itself."""
        try:
            for session in api(self.base_url, self.token, "/api/sessions"):
                api(self.base_url, self.token, f"/api/sessions/{session['id']}", method="DELETE")
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            pass

    def stop(self):
        if self.process.poll() is not None:
            return
        self.shut_down_kernels()
        try:
            api(self.base_url, self.token, "/api/shutdown", method="POST")
            self.process.wait(timeout=30)
        except (urllib.error.URLError, ConnectionError, OSError, subprocess.TimeoutExpired):
            pass
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 15)  # SIGTERM: the server shuts its kernels down
                self.process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 9)
            except ProcessLookupError:
                pass
            self.process.wait()


# ---------------------------------------------------------------------------------------------------------------
# The page

# The open notebook as the test sees it, from window.jupyterapp (--LabApp.expose_app_in_browser).
READ_PAGE = """(path) => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  if (!panel || !panel.context || panel.context.path !== path || !panel.content) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.map((cell) => {
    const model = cell.model, node = cell.node;
    const outputs = model.type === 'code' ? model.outputs.toJSON() : [];
    const text = (o) => Array.isArray(o.text) ? o.text.join('') : (o.text || '');
    const stderrNodes = node.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
    return {
      type: model.type,
      count: model.type === 'code' ? model.executionCount : null,
      pending: ((node.querySelector('.jp-InputPrompt') || {}).textContent || '').includes('*'),
      errors: outputs.filter((o) => o.output_type === 'error').map((o) => o.ename + ': ' + o.evalue),
      stderr: outputs.filter((o) => o.output_type === 'stream' && o.name === 'stderr').map(text).join(''),
      tracebacks: Array.from(stderrNodes).filter(
        (n) => n.textContent.includes('Traceback (most recent call last)')).length,
      images: Array.from(node.querySelectorAll('.jp-OutputArea-output img')).filter(
        (img) => img.complete && img.naturalWidth > 0).length,
      progress_widgets: node.querySelectorAll(
        '.jp-OutputArea-output .widget-hprogress, .jp-OutputArea-output .widget-vprogress').length,
      other_widgets: node.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length,
      widget_outputs: outputs.filter(
        (o) => o.data && o.data['application/vnd.jupyter.widget-view+json']).length,
    };
  });
  return {kernel: kernel ? kernel.status : 'none', cells: cells};
}"""

# How much taller the notebook's cells are than its scrolled view (the blank space JupyterLab leaves to scroll past
# the last cell left out), after scrolling it back to the top.
NOTEBOOK_HEIGHT = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const notebook = panel && panel.content;
  if (!notebook || !notebook.widgets) return 0;
  const outer = notebook.node.querySelector('.jp-WindowedPanel-outer') || notebook.node;
  outer.scrollTop = 0;
  const cells = notebook.widgets;
  if (!cells.length) return 0;
  const bottom = cells[cells.length - 1].node.getBoundingClientRect().bottom - outer.getBoundingClientRect().top;
  return Math.ceil(bottom + 40 - outer.clientHeight);
}"""


def summary(cells):
    """What the page drew, in words: figures, progress widgets, text bars."""
    figures = sum(c.get("images", 0) for c in cells)
    widgets = sum(c.get("progress_widgets", 0) for c in cells)
    text_bars = sum(1 for c in cells if PROGRESS_BAR.search(c.get("stderr", "")))
    return (f"{figures} figure{'s' * (figures != 1)}, {widgets} progress widget{'s' * (widgets != 1)}"
            + (f", {text_bars} text bar{'s' * (text_bars != 1)}" if text_bars else ""))


def finished(state, expected):
    """True when the kernel is idle, no cell is queued, and every cell ran or an error stopped the run."""
    if state is None or state["kernel"] != "idle" or any(c["pending"] for c in state["cells"]):
        return False
    if any(c["errors"] for c in state["cells"]):
        return True
    return all(c["count"] is not None for want, c in zip(expected, state["cells"], strict=False) if want.runs)


def run_in_page(browser, server, name, expected, timeout, screenshot):
    """Open one notebook copy, restart and run all through the menus, check it.

    Returns (seconds from the click to the end of the run, [problem], what the page drew in words)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    context = browser.new_context(viewport=VIEWPORT)
    console = []
    try:
        page = context.new_page()
        page.on("console", lambda message: message.type == "error" and console.append(message.text))
        page.on("pageerror", lambda error: console.append(f"uncaught {error}"))
        query = urllib.parse.urlencode({"token": server.token})
        page.goto(f"{server.base_url}/lab/tree/{urllib.parse.quote(name)}?reset&{query}", timeout=120_000)
        try:
            page.wait_for_function(f"({READ_PAGE})({json.dumps(name)})?.kernel === 'idle'", timeout=180_000,
                                   polling=500)
        except PlaywrightTimeout:
            dialog = page.locator(".jp-Dialog-header")
            asked = f', a dialog asks "{dialog.first.inner_text().strip()}"' if dialog.count() else ""
            take_screenshot(page, screenshot)
            return float("nan"), [f"the notebook did not open with an idle kernel within 180 s{asked}"], ""
        page.evaluate("window.jupyterapp.commands.execute('application:toggle-left-area')")  # room for the notebook
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Restart Kernel and Run All Cells…").click()
        page.locator(".jp-Dialog .jp-mod-accept").click()  # "Restart Kernel?" -> Restart
        start, state, done_since = time.monotonic(), None, None
        while time.monotonic() - start < timeout:
            page.wait_for_timeout(1000)
            state = page.evaluate(READ_PAGE, name)
            if finished(state, expected):
                if done_since is not None:  # done on two polls in a row: no output still arriving
                    break
                done_since = time.monotonic()
            else:
                done_since = None
        seconds = time.monotonic() - start
        page.wait_for_timeout(1000)  # let the last figures and widgets draw
        state = page.evaluate(READ_PAGE, name)
        found = problems(expected, state["cells"], page.inner_text("body"), console)
        if not finished(state, expected):
            queued = [i for i, c in enumerate(state["cells"]) if c["pending"]]
            found.insert(0, f"not finished after {timeout:.0f} s (--timeout); cells running or queued: "
                            f"{', '.join(map(str, queued[:10]))}{' ...' if len(queued) > 10 else ''}")
        take_screenshot(page, screenshot)
        return seconds, found, summary(state["cells"])
    finally:
        context.close()
        server.shut_down_kernels()


def take_screenshot(page, path):
    """The whole notebook in one image: the viewport is made as tall as the notebook's scrolled content."""
    extra = page.evaluate(NOTEBOOK_HEIGHT)
    height = min(VIEWPORT["height"] + max(0, extra), MAX_SCREENSHOT_HEIGHT)
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    page.wait_for_timeout(1000)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


# ---------------------------------------------------------------------------------------------------------------

def main(arguments):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--screenshots", type=Path, default=Path(DEFAULT_SCREENSHOTS),
                        help=f"folder for one full-page PNG per notebook (default: {DEFAULT_SCREENSHOTS}/)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds a notebook may run in the page (default: {DEFAULT_TIMEOUT:.0f})")
    parser.add_argument("--chromium", help="the Chromium (or Chrome) executable (default: $CHROMIUM, else "
                                           f"the first of {', '.join(CHROMIUM_NAMES)} on the PATH)")
    options = parser.parse_args(arguments)

    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    chromium = find_chromium(options.chromium)
    if sync_playwright is None or chromium is None:
        print(missing_message(sync_playwright is None, chromium is None, options.chromium or
                              os.environ.get("CHROMIUM")), file=sys.stderr)
        return 2
    for name in REMOVED_VARIABLES:
        if name in os.environ and name.startswith(("LORAUTIL", "MPL")):
            print(f"note: {name} is not passed to JupyterLab: it {REMOVED_VARIABLES[name]}", flush=True)

    notebooks = [path.resolve() for path in options.notebooks]
    missing = [str(path) for path in notebooks if not path.is_file()]
    if missing:
        print(f"no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    if len({path.name for path in notebooks}) < len(notebooks):  # the copies share one folder
        print("two notebooks have the same file name: test them in separate runs", file=sys.stderr)
        return 2
    failed, total_start = [], time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lora-browser-test-") as temporary:
        work = Path(temporary)
        write_lab_settings(work / "settings")
        copies = work / "notebooks"
        copies.mkdir()
        plans = {}
        for path in notebooks:
            committed = json.loads(path.read_text())
            plans[path] = expectations(committed)
            (copies / path.name).write_text(json.dumps(cleared_copy(committed), indent=1))
        server = Server(work, copies)
        try:
            server.wait_ready()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
                print(f"JupyterLab on {server.base_url}, {chromium}, screenshots in {options.screenshots}/",
                      flush=True)
                for path in notebooks:
                    screenshot = options.screenshots / f"{path.stem}.png"
                    try:
                        seconds, found, drawn = run_in_page(browser, server, path.name, plans[path],
                                                            options.timeout, screenshot)
                    except PlaywrightError as error:
                        seconds, found, drawn = float("nan"), [f"the browser: {str(error).splitlines()[0]}"], ""
                    verdict = "FAIL" if found else "ok"
                    took = f"{seconds:7.1f} s" if seconds == seconds else "      - s"  # nan: it never ran
                    print(f"{verdict:<5}{path.name:<36}{took}   {drawn}".rstrip(), flush=True)
                    for problem in found:
                        print(f"       {problem}", flush=True)
                    if found:
                        failed.append(path.name)
                browser.close()
        except RuntimeError as error:  # JupyterLab did not start
            print(f"FAIL: {error}", file=sys.stderr)
            return 1
        except PlaywrightError as error:  # Chromium did not start
            print(f"FAIL: Chromium ({chromium}) did not start: {error}", file=sys.stderr)
            return 1
        finally:
            server.stop()
    print(f"{len(notebooks) - len(failed)} of {len(notebooks)} notebooks passed in the browser, "
          f"{time.monotonic() - total_start:.0f} s in all; screenshots in {options.screenshots}/")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:  # JupyterLab, its kernels and the browser are already shut down (finally clauses)
        print("interrupted", file=sys.stderr)
        sys.exit(130)
