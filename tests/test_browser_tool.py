"""tools/test_browser.py (`make test-browser`): its pure parts, which need neither Playwright nor Chromium."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOL_PATH = REPO / "tools" / "test_browser.py"
spec = importlib.util.spec_from_file_location("browser_tool", TOOL_PATH)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)

FIGURE = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}, "metadata": {}}
BAR = {"output_type": "stream", "name": "stderr", "text": "Epoch 1: 100%|##########| 200/200 [00:00<00:00]\n"}
PRINTED = {"output_type": "stream", "name": "stdout", "text": "accuracy 0.89\n"}


def code(source, *outputs):
    return {"cell_type": "code", "metadata": {}, "source": source, "outputs": list(outputs), "execution_count": 3}


def notebook(*cells):
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def page_cell(cell_type="code", count=1, **shown):
    """One cell as the page reports it (see READ_PAGE in the tool)."""
    return {"type": cell_type, "count": count, "pending": False, "errors": [], "stderr": "", "tracebacks": 0,
            "images": 0, "progress_widgets": 0, "other_widgets": 0, "widget_outputs": 0, **shown}


def test_the_settings_turn_windowing_off_and_autosave_off(tmp_path):
    written = tool.write_lab_settings(tmp_path)
    tracker = tmp_path / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    assert tracker in written
    assert json.loads(tracker.read_text()) == {"windowingMode": "none"}
    docmanager = tmp_path / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings"
    assert json.loads(docmanager.read_text()) == {"autosave": False}
    notification = tmp_path / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    assert json.loads(notification.read_text())["fetchNews"] == "false"


def test_every_setting_names_a_plugin_and_properties_jupyterlab_has():
    """A misspelt plugin or setting would be ignored by JupyterLab without a word: check them against its schemas."""
    schemas = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"
    assert schemas.is_dir(), f"JupyterLab's schemas are not at {schemas}"
    for plugin, values in tool.LAB_SETTINGS.items():
        package, name = plugin.rsplit("/", 1)
        schema = json.loads((schemas / package / f"{name}.json").read_text())
        for key, value in values.items():
            assert key in schema["properties"], (plugin, key)
            allowed = schema["properties"][key]
            if "oneOf" in allowed:
                assert value in [choice["const"] for choice in allowed["oneOf"]], (plugin, key, value)
            if "enum" in allowed:
                assert value in allowed["enum"], (plugin, key, value)


def test_expectations_count_figures_and_bars_per_cell():
    nb = notebook({"cell_type": "markdown", "metadata": {}, "source": "# Title"},
                  code("plot()", FIGURE, PRINTED, FIGURE),
                  code("losses = lorautil.train(model, batches)", BAR, PRINTED),
                  code(""),
                  code("print(1)", PRINTED))
    cells = tool.expectations(nb)
    assert [(c.cell_type, c.runs, c.figures, c.text_bars) for c in cells] == [
        ("markdown", False, 0, 0), ("code", True, 2, 0), ("code", True, 0, 1), ("code", False, 0, 0),
        ("code", True, 0, 0)]
    assert cells[2].progress_bar and not cells[2].text_bar_by_design


def test_cells_are_named_by_index_and_first_line():
    cells = tool.expectations(notebook(code("\n\n  x = 1\ny = 2"), code(""), code("z = " + "1 + " * 30 + "1")))
    assert [c.name for c in cells] == ["cell 0 `x = 1`", "cell 1", "cell 2 `z = " + "1 + " * 13 + "1...`"]


def test_a_cell_calling_plain_tqdm_keeps_its_text_bar_by_design():
    """Notebook 02 draws its bar with tqdm's plain text bar on purpose; lorautil's bars are tqdm.auto widgets."""
    nb = notebook(code("from tqdm import tqdm  # the plain text bar reads well on GitHub\nimport lorautil"),
                  code('bar = tqdm(train_batches, desc="Epoch 1")\nfor x in bar:\n    pass', BAR),
                  code("lorautil.train(model, batches)", BAR))
    by_design = [c.text_bar_by_design for c in tool.expectations(nb)]
    assert by_design == [False, True, False]
    # tqdm.auto, or a renamed import, is not the plain text bar
    for first in ("from tqdm.auto import tqdm", "from tqdm import tqdm as tqdm_text", "import tqdm"):
        nb["cells"][0]["source"] = first
        assert not any(c.text_bar_by_design for c in tool.expectations(nb)), first


def test_a_cell_that_calls_lorautil_tqdm_expects_a_widget_even_without_committed_output():
    """Outputs committed before a bar was added say nothing of it; the cell's own call does."""
    assert tool.calls_lorautil_tqdm('rows = [f(r) for r in lorautil.tqdm(RANKS, desc="sweep")]')
    assert tool.calls_lorautil_tqdm("for x in lorautil.tqdm(range(3)):\n    pass")
    assert not tool.calls_lorautil_tqdm("def sweep(items):\n    return [f(i) for i in lorautil.tqdm(items)]")
    assert not tool.calls_lorautil_tqdm("bar = tqdm(items)")
    assert not tool.calls_lorautil_tqdm("%time lorautil.tqdm(range(3))")  # IPython syntax: no claim
    expected = tool.expectations(notebook(code("for x in lorautil.tqdm(range(3)):\n    pass", PRINTED)))
    assert expected[0].progress_bar and expected[0].text_bars == 0
    assert tool.problems(expected, [page_cell(progress_widgets=1)], "", []) == []
    assert tool.problems(expected, [page_cell()], "", []) == [
        "cell 0 `for x in lorautil.tqdm(range(3)):`: no progress bar widget drawn (it calls lorautil.tqdm)"]


def test_expectations_of_the_committed_notebooks_match_their_outputs():
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        cells = tool.expectations(nb)
        assert len(cells) == len(nb["cells"])
        images = sum(1 for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]
                     if o["output_type"] in ("display_data", "execute_result")
                     and any(m.startswith("image/") for m in o["data"]))
        assert sum(c.figures for c in cells) == images, path.name


def test_the_copy_has_no_outputs_and_the_original_is_untouched():
    nb = notebook(code("plot()", FIGURE), code("print(1)", PRINTED))
    before = json.dumps(nb)
    copy = tool.cleared_copy(nb)
    assert json.dumps(nb) == before
    assert [(c["outputs"], c["execution_count"]) for c in copy["cells"]] == [([], None), ([], None)]
    assert [c["source"] for c in copy["cells"]] == ["plot()", "print(1)"]


def test_the_server_gets_no_text_progress_no_agg_backend_and_temporary_jupyter_folders(tmp_path):
    environ = {"LORAUTIL_TEXT_PROGRESS": "1", "MPLBACKEND": "Agg", "DISPLAY": ":0", "MNIST_MIRROR": "/m",
               "PATH": "/usr/bin"}
    env = tool.server_environment(environ, tmp_path, "/course/.venv/bin/python")
    assert not {"LORAUTIL_TEXT_PROGRESS", "MPLBACKEND", "DISPLAY"} & set(env)
    assert env["MNIST_MIRROR"] == "/m"
    assert env["JUPYTERLAB_SETTINGS_DIR"] == str(tmp_path / "settings")
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        assert Path(env[name]).parent == tmp_path, name
    assert env["PATH"].split(os.pathsep) == ["/course/.venv/bin", "/usr/bin"]


def test_server_arguments_are_the_labs_on_the_copies_on_loopback(tmp_path):
    arguments = tool.server_arguments(tmp_path, 12345, "secret", euid=0, platform="linux")
    assert arguments[0] == "lab"
    assert [a for a in arguments if a.startswith("--notebook-dir=")] == [f"--notebook-dir={tmp_path}"]
    for expected in ("--allow-root", "--no-browser", "--ip=127.0.0.1", "--port=12345",
                     "--IdentityProvider.token=secret", "--LabApp.expose_app_in_browser=True"):
        assert expected in arguments
    on_a_mac = tool.server_arguments(tmp_path, 1, "t", euid=501, platform="darwin")
    assert "--allow-root" not in on_a_mac and on_a_mac.count("--no-browser") == 1


def test_chromium_is_found_by_option_by_variable_or_on_the_path(tmp_path):
    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    nothing = {}.get
    assert tool.find_chromium(str(browser), environ={}, which=nothing) == str(browser)
    assert tool.find_chromium(None, environ={"CHROMIUM": str(browser)}, which=nothing) == str(browser)
    assert tool.find_chromium(str(tmp_path / "absent"), environ={}, which=nothing) is None
    assert tool.find_chromium(None, environ={}, which=nothing) is None
    on_path = {"chromium-browser": "/usr/bin/chromium-browser", "google-chrome": "/usr/bin/google-chrome"}
    assert tool.find_chromium(None, environ={}, which=on_path.get) == "/usr/bin/chromium-browser"


def test_the_missing_browser_message_says_how_to_install_it():
    message = tool.missing_message(playwright_missing=False, chromium_missing=True)
    assert "apt-get install -y chromium" in message and "--chromium" in message
    assert "Playwright (the Python package)" not in message
    both = tool.missing_message(playwright_missing=True, chromium_missing=True, named="/opt/chrome")
    assert "requirements-browser.txt" in both and "/opt/chrome is not an executable file" in both
    assert tool.missing_message(False, False) == ""


def test_the_runner_stops_with_the_message_when_chromium_is_missing(tmp_path):
    finished = subprocess.run(
        [sys.executable, str(TOOL_PATH), "--chromium", str(tmp_path / "no-chromium"),
         "--screenshots", str(tmp_path / "shots"), str(REPO / "notebooks" / "01_matrix_rank.ipynb")],
        capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2, finished.stdout + finished.stderr
    assert "apt-get install -y chromium" in finished.stderr
    assert not (tmp_path / "shots").exists()


def test_a_clean_page_has_no_problems():
    expected = tool.expectations(notebook({"cell_type": "markdown", "metadata": {}, "source": "x"},
                                          code("plot()", FIGURE), code("train()", BAR), code("")))
    cells = [page_cell("markdown", count=None), page_cell(images=1),
             page_cell(progress_widgets=1, other_widgets=3, widget_outputs=1), page_cell(count=None)]
    assert tool.problems(expected, cells, "page text", []) == []


def test_each_failure_is_named():
    expected = tool.expectations(notebook(code("plot()", FIGURE), code("train()", BAR), code("1/0"),
                                          code("print(1)", PRINTED)))
    cells = [page_cell(images=0), page_cell(stderr=BAR["text"]),
             page_cell(errors=["ZeroDivisionError: division by zero"], tracebacks=1), page_cell(count=None)]
    found = tool.problems(expected, cells, "Error displaying widget: model not found",
                          ["Error: Module @jupyter-widgets/controls is not registered"])
    assert found == [
        "cell 0 `plot()`: 0 figure(s) drawn as images, the committed notebook has 1",
        "cell 1 `train()`: a progress bar drawn as text, not as a widget (tqdm's text fallback)",
        "cell 1 `train()`: no progress bar widget drawn (the committed notebook has a tqdm bar here)",
        "cell 2 `1/0`: error output ZeroDivisionError: division by zero",
        "cell 3 `print(1)`: did not run (no execution count)",  # after the error in cell 2
        'the page says "Error displaying widget"',
        "console error: Error: Module @jupyter-widgets/controls is not registered",
    ]


def test_tracebacks_widgets_not_drawn_and_tqdm_without_ipywidgets_are_failures():
    expected = tool.expectations(notebook(code("log()"), code("show()"), code("train()", BAR)))
    cells = [page_cell(stderr="Traceback (most recent call last):\n", tracebacks=1),
             page_cell(widget_outputs=1),
             page_cell(stderr="TqdmWarning: IProgress not found. Please update jupyter and ipywidgets.\n"
                              + BAR["text"])]
    found = tool.problems(expected, cells, "", [])
    assert "cell 0 `log()`: a traceback in its stderr output" in found
    assert "cell 1 `show()`: 1 widget output(s) not drawn as widgets" in found
    assert any(p.startswith("cell 2 `train()`: tqdm found no ipywidgets") for p in found)


def test_a_plain_tqdm_bar_must_stay_text():
    expected = tool.expectations(notebook(code("from tqdm import tqdm\nfor x in tqdm(range(3)):\n    pass", BAR)))
    assert tool.problems(expected, [page_cell(stderr=BAR["text"])], "", []) == []
    assert tool.problems(expected, [page_cell()], "", []) == [
        "cell 0 `from tqdm import tqdm`: its tqdm text bar (plain tqdm, by design) is missing"]


def test_only_allow_listed_console_errors_pass():
    expected = tool.expectations(notebook(code("print(1)")))
    noise = ("Could not restore the debugger state: Canceled future for debug_request message before replies "
             "were done")
    assert tool.allowed_console_error(noise)
    assert tool.problems(expected, [page_cell()], "", [noise]) == []
    assert tool.problems(expected, [page_cell()], "", ["Could not restore the debugger state: other"]) == [
        "console error: Could not restore the debugger state: other"]
    for pattern, reason in tool.ALLOWED_CONSOLE_ERRORS:
        assert pattern.startswith("^") and pattern.endswith("$") and reason, pattern


def test_cells_left_unrun_after_an_error_or_a_timeout_are_one_line():
    expected = tool.expectations(notebook(code("a = 1"), code("b = 2"), code(""), code("c = 3"), code("d = 4")))
    cells = [page_cell(), page_cell(count=None), page_cell(count=None), page_cell(count=None),
             page_cell(count=None)]
    assert tool.problems(expected, cells, "", []) == [
        "cell 1 `b = 2`: did not run (no execution count), and 2 code cell(s) after it"]


def test_a_page_with_other_cells_than_the_notebook_is_a_failure():
    expected = tool.expectations(notebook(code("print(1)"), code("print(2)")))
    assert tool.problems(expected, [page_cell()], "", []) == ["the page shows 1 cells, the notebook has 2"]


def test_a_run_is_finished_when_idle_with_nothing_queued_and_all_run_or_stopped_by_an_error():
    expected = tool.expectations(notebook(code("a = 1"), code(""), code("b = 2")))
    state = {"kernel": "idle", "cells": [page_cell(count=1), page_cell(count=None), page_cell(count=2)]}
    assert tool.finished(state, expected)
    assert not tool.finished(None, expected)
    assert not tool.finished({**state, "kernel": "busy"}, expected)
    queued = {"kernel": "idle", "cells": [page_cell(count=1), page_cell(count=None), page_cell(count=None,
                                                                                              pending=True)]}
    assert not tool.finished(queued, expected)
    not_yet = {"kernel": "idle", "cells": [page_cell(count=None), page_cell(count=None), page_cell(count=None)]}
    assert not tool.finished(not_yet, expected)
    stopped = {"kernel": "idle", "cells": [page_cell(count=1, errors=["ValueError: x"]), page_cell(count=None),
                                           page_cell(count=None)]}
    assert tool.finished(stopped, expected)
