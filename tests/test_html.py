"""tools/build_html.py: `make html` writes the executed notebooks as pages that read offline, and an index."""
import re
import subprocess
import sys
from pathlib import Path

import nbformat
from bs4 import BeautifulSoup
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

TOOL = Path(__file__).resolve().parents[1] / "tools" / "build_html.py"
# A 1x1 PNG, as matplotlib's inline backend stores a figure: base64 under image/png.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
REMOTE = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)


def solution(cell):
    cell.metadata.update({"tags": ["solution"], "jupyter": {"source_hidden": True}})
    return cell


def write_notebooks(folder):
    plot = new_code_cell("plot()", execution_count=1,
                         outputs=[new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})])
    first = new_notebook(cells=[
        new_markdown_cell("# 01 · First steps\n\n**Learning goals**\n\nRead on in [the next one](02_second.ipynb#part);"
                          " the update is $W + BA$."),
        plot,
        new_markdown_cell("## Exercises\n\n**1. Twice one.** What is 2 × 1?"),
        solution(new_code_cell("# Solution to exercise 1\nprint(2 * 1)", execution_count=2,
                               outputs=[new_output("stream", name="stdout", text="2\n")])),
        solution(new_markdown_cell("Two, as printed.")),
    ])
    first.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    second = new_notebook(cells=[new_markdown_cell("# 02 · Second"),
                                 new_code_cell("1 + 1", execution_count=1, outputs=[
                                     new_output("execute_result", data={"text/plain": "2"}, execution_count=1)])])
    paths = folder / "01_first.ipynb", folder / "02_second.ipynb"
    for nb, path in zip((first, second), paths, strict=True):
        nbformat.write(nb, path)
    return paths


def convert(*arguments):
    return subprocess.run([sys.executable, str(TOOL), *map(str, arguments)], capture_output=True, text=True)


def page(path):
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def test_pages_with_embedded_images_folded_solutions_and_nothing_from_the_network(tmp_path):
    paths = write_notebooks(tmp_path)
    before = [p.read_bytes() for p in paths]
    out = tmp_path / "html"
    finished = convert("--out", out, *paths)
    assert finished.returncode == 0, finished.stderr
    assert sorted(p.name for p in out.iterdir()) == ["01_first.html", "02_second.html", "index.html"]
    assert [p.read_bytes() for p in paths] == before  # the notebooks are read, never re-executed or written

    index = page(out / "index.html")
    assert [(a["href"], a.text) for a in index.find_all("a")] == [
        ("01_first.html", "01 · First steps"), ("02_second.html", "02 · Second")]

    first = page(out / "01_first.html")
    assert first.title.text == "01 · First steps"
    assert [img["src"] for img in first.find_all("img")] == [f"data:image/png;base64,{PNG}"]
    assert first.find("a", string="the next one")["href"] == "02_second.html#part"
    details = first.find_all("details")
    assert [d.summary.text for d in details] == ["Solution to exercise 1"]
    assert "print" in details[0].text and "Two, as printed." in details[0].text
    assert "open" not in details[0].attrs  # folded until the reader opens it
    assert "What is 2 × 1?" not in details[0].text  # the question stays outside
    assert "$W + BA$" in first.text  # TeX math shows as its source: no MathJax is loaded

    for name in ("01_first.html", "02_second.html", "index.html"):
        soup = page(out / name)
        needed = [tag for tag in soup.find_all(["script", "link", "img", "iframe", "source"])
                  if REMOTE.match(tag.get("src") or tag.get("href") or "")]
        assert needed == [], f"{name} loads {needed}"
        assert soup.find_all("script") == [], name
        for style in soup.find_all("style"):
            assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", style.text), name


def test_an_unreadable_notebook_stops_the_run_before_any_page_is_written(tmp_path):
    good, _ = write_notebooks(tmp_path)
    broken = tmp_path / "03_broken.ipynb"
    broken.write_text('{"cells": [', encoding="utf-8")
    out = tmp_path / "html"
    finished = convert("--out", out, good, broken)
    assert finished.returncode != 0
    assert not out.exists() or list(out.iterdir()) == []
