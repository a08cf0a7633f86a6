# `make lab`, `make test` and `make run` each do all the set-up they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb)) $(wildcard notebooks/appendix_*.ipynb)

.PHONY: lab test run bench data models html student test-browser clean-data

$(INSTALLED): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10 or newer is needed; run: make PYTHON=python3.11 ..."'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

data: $(INSTALLED)
	$(PY) -c 'from lorautil.data import main; main()'

# As root it adds --allow-root, with no display --no-browser (tools/lab.py); e.g. LAB_ARGS="--ip=0.0.0.0 --port=8888".
LAB_ARGS ?=
lab: data
	$(PY) tools/lab.py $(LAB_ARGS)

test: data
	$(PY) -m ruff check .
	$(PY) -m pytest -q -rs -p no:cacheprovider tests notebooks --nbval-lax --nbval-current-env

# The pre-trained models every notebook loads, trained once (about 2 minutes) if data/ lacks them, so that
# notebooks running side by side do not each train their own.
models: data
	$(PY) -c 'import torch, lorautil; torch.set_num_threads(1); [lorautil.load_base_model(relu, progress=False) for relu in (False, True)]; [lorautil.load_pretrained(name, progress=False) for name in ("cnn", "vit")]'

# JOBS notebooks at a time (default: one per CPU core, at most 4), each on one thread.
JOBS ?=
run: models
	$(PY) tools/run_notebooks.py $(if $(JOBS),--jobs $(JOBS)) $(NOTEBOOKS)

bench: data
	$(PY) tools/bench.py

# The committed notebooks, outputs and all, as static pages in html/ (start at html/index.html); nothing is run.
html: $(INSTALLED)
	$(PY) tools/build_html.py --out html $(NOTEBOOKS)

# The student edition in student/ (git-ignored): no outputs, no solutions, answer and check cells for the exercises.
student: $(INSTALLED)
	$(PY) tools/make_student.py --out student $(NOTEBOOKS)

# Opt-in, not part of `make test`: every notebook run in headless Chromium through JupyterLab (tools/test_browser.py).
# Needs the system's Chromium (Debian: apt-get install -y chromium); screenshots go to browser-screenshots/.
BROWSER_ARGS ?=
test-browser: data
	$(PY) -m pip install --quiet -r requirements-browser.txt
	$(PY) tools/test_browser.py $(BROWSER_ARGS) $(NOTEBOOKS)

clean-data:
	rm -rf data/MNIST data/*.pt data/adapters
