"""Write the executed course as static HTML pages that read offline: `make html`.

Usage: python tools/build_html.py [--out html] [--mathjax] [notebooks/01_matrix_rank.ipynb ...]
Converts the notebooks as committed (nothing is executed) into one page each, plus an index.html that links
them in order with their titles; without arguments, every notebook in notebooks/, in the course's order.
A page needs no network: images are embedded as data: URIs and the CSS is inlined, and no script is loaded
(nbconvert's default pages fetch require.js and MathJax from a CDN). So TeX math shows as its source, e.g.
$W + \\tfrac{\\alpha}{r} BA$; --mathjax adds nbconvert's MathJax from the CDN, which typesets it when online.
Solution cells are kept, each exercise's inside a collapsed <details>. Each page is written to a temporary
file and renamed, so an interrupted run never leaves a half-written page.
(Not called html.py: a script in tools/ named like the standard library's `html` would shadow it for every
script there, run_notebooks.py and lab.py included, since Python puts the script's folder first on the path.)
"""
import argparse
import html
import re
import sys
from pathlib import Path

import jinja2
import nbformat
from nbconvert import HTMLExporter

from lorautil.files import atomic_path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_NAME = "course_offline.html.j2"

# nbconvert's JupyterLab page without its scripts; solution cells wrapped in <details>; links to the index.
TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{% from 'mathjax.html.j2' import mathjax %}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}
{%- if resources.course_mathjax -%}{{ mathjax(resources.mathjax_url) }}{%- endif -%}
{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style type="text/css">
main { max-width: 1100px; margin: 0 auto; }
nav.course-nav { font-family: var(--jp-ui-font-family); font-size: 0.9rem; padding: 0.6em 1em;
  border-bottom: 1px solid #ddd; margin-bottom: 0.5em; }
nav.course-nav.bottom { border-bottom: none; border-top: 1px solid #ddd; margin-top: 1em; }
details.solution { margin: 0.4em 0 0.8em; border-left: 3px solid #8ab; padding-left: 0.4em; }
details.solution > summary { cursor: pointer; font-family: var(--jp-ui-font-family); color: #357;
  padding: 0.3em 0; }
</style>
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
{{ resources.course_nav }}
{%- endblock body_header -%}
{% block body_footer %}
{{ resources.course_nav | replace('class="course-nav"', 'class="course-nav bottom"') }}
{{ super() }}
{% endblock body_footer %}
{%- block any_cell -%}
{%- if cell.metadata.get('course_details_open') -%}
<details class="solution"><summary>{{ cell.metadata.get('course_details_open') | e }}</summary>
{%- endif -%}
{{ super() }}
{%- if cell.metadata.get('course_details_close') -%}
</details>
{%- endif -%}
{%- endblock any_cell -%}
"""

INDEX_CSS = """body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.5;
  color: #222; margin: 0; }
main { max-width: 800px; margin: 2em auto; padding: 0 1em; }
ul { list-style: none; padding: 0; }
li { margin: 0.5em 0; }
.file { color: #777; font-size: 0.85em; }"""


def course_order(folder):
    """The notebooks of `folder` in the course's order, as the Makefile lists them: numbered ones, then appendices."""
    folder = Path(folder)
    return sorted(folder.glob("[0-9][0-9]_*.ipynb")) + sorted(folder.glob("appendix_*.ipynb"))


def title_of(nb, fallback):
    """The text of the notebook's first Markdown heading, else `fallback`."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#+\s+(.+?)\s*#*\s*$", cell.source, flags=re.MULTILINE)
            if match:
                return match.group(1)
    return fallback


def is_solution(cell):
    return "solution" in cell.metadata.get("tags", [])


def mark_solutions(nb):
    """Mark each run of consecutive solution cells to open and close one <details> (the template reads the marks)."""
    cells = nb.cells
    for i, cell in enumerate(cells):
        if not is_solution(cell):
            continue
        if i == 0 or not is_solution(cells[i - 1]):
            first_line = cell.source.splitlines()[0] if cell.source else ""
            match = re.match(r"#\s*(Solution to exercise \d+)", first_line)
            cell.metadata["course_details_open"] = match.group(1) if match else "Solution"
        if i == len(cells) - 1 or not is_solution(cells[i + 1]):
            cell.metadata["course_details_close"] = True
    return nb


def link_pages(body, stems):
    """Point links between notebooks (`06_scaling_and_placement.ipynb#...`) at their pages."""
    def replace(match):
        stem, anchor = match.group(1), match.group(2) or ""
        return f'href="{stem}.html{anchor}"' if stem in stems else match.group(0)
    return re.sub(r'href="([^"#/:?]+)\.ipynb(#[^"]*)?"', replace, body)


def navigation(pages, i):
    """Links to the index and to the previous and next pages."""
    parts = ['<a href="index.html">Contents</a>']
    if i > 0:
        parts.insert(0, f'&larr; <a href="{pages[i - 1][0]}.html">{html.escape(pages[i - 1][1])}</a>')
    if i < len(pages) - 1:
        parts.append(f'<a href="{pages[i + 1][0]}.html">{html.escape(pages[i + 1][1])}</a> &rarr;')
    return '<nav class="course-nav">' + " &middot; ".join(parts) + "</nav>"


def exporter():
    """nbconvert's JupyterLab exporter with the offline template above; images in Markdown embedded too."""
    return HTMLExporter(template_name="lab", template_file=TEMPLATE_NAME, embed_images=True,
                        extra_loaders=[jinja2.DictLoader({TEMPLATE_NAME: TEMPLATE})])


def write_text(path, text):
    with atomic_path(path) as tmp:  # an interrupted run never leaves a half-written page
        Path(tmp).write_text(text, encoding="utf-8")


def course_title():
    readme = ROOT / "README.md"
    if readme.exists():
        for line in readme.read_text(encoding="utf-8").splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return "Notebooks"


def index_page(title, pages):
    items = "\n".join(f'<li><a href="{stem}.html">{html.escape(page_title)}</a> '
                      f'<span class="file">{html.escape(stem)}.ipynb</span></li>' for stem, page_title in pages)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8" />\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1.0">\n'
            f"<title>{html.escape(title)}</title>\n<style>\n{INDEX_CSS}\n</style>\n</head>\n<body>\n<main>\n"
            f"<h1>{html.escape(title)}</h1>\n"
            f"<p>The course's notebooks as committed, with their outputs; read in this order. Solutions are "
            f"folded under each exercise: click to open one.</p>\n<ul>\n{items}\n</ul>\n</main>\n</body>\n</html>\n")


def build(notebooks, out, title=None, mathjax=False):
    """Write one page per notebook and index.html into `out`; returns the paths written, index last."""
    out = Path(out)
    notebooks = [Path(p) for p in notebooks]
    loaded = []
    for path in notebooks:  # read them all first: one that cannot be read stops the run before any page is written
        try:
            loaded.append(nbformat.read(path, as_version=4))
        except Exception as error:
            raise SystemExit(f"error: cannot read {path}: {error}") from None
    pages = [(path.stem, title_of(nb, path.stem)) for path, nb in zip(notebooks, loaded, strict=True)]
    stems = {stem for stem, _ in pages}
    export = exporter()
    written = []
    for i, (path, nb) in enumerate(zip(notebooks, loaded, strict=True)):
        mark_solutions(nb)  # a copy in memory: the notebook file is never written
        nb.metadata["title"] = pages[i][1]
        nb.metadata.pop("widgets", None)  # widget state would load a widget manager from a CDN
        resources = {"metadata": {"name": path.stem, "path": str(path.parent)},
                     "course_nav": navigation(pages, i), "course_mathjax": mathjax}
        body, _ = export.from_notebook_node(nb, resources=resources)
        target = out / f"{path.stem}.html"
        write_text(target, link_pages(body, stems))
        written.append(target)
        print(f"{target}  {pages[i][1]}", flush=True)
    index = out / "index.html"
    write_text(index, index_page(title or course_title(), pages))
    written.append(index)
    print(f"{index}  ({len(pages)} pages)")
    return written


def main(arguments):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="default: every notebook in notebooks/, in the course's order")
    parser.add_argument("--out", default=str(ROOT / "html"), help="folder for the pages (default: html/)")
    parser.add_argument("--title", help="the index page's title (default: README.md's first heading)")
    parser.add_argument("--mathjax", action="store_true",
                        help="load MathJax from its CDN to typeset TeX math (needs the network to read the pages)")
    options = parser.parse_args(arguments)
    notebooks = options.notebooks or course_order(ROOT / "notebooks")
    if not notebooks:
        sys.exit("no notebooks to convert")
    build(notebooks, options.out, options.title, options.mathjax)


if __name__ == "__main__":
    main(sys.argv[1:])
