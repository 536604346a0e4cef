# Two commands for a fresh machine:  `make run` (the dashboard) and `make test` (everything CI runs).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test lint bench samples clean

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

## run: start the dashboard on http://localhost:$(PORT) (opens on a sample model, no upload needed)
run: $(VENV)/.runtime
	$(PY) -m streamlit run app.py --server.port $(PORT) --browser.gatherUsageStats false

## test: lint + unit, property-based, AppTest and real-browser tests (installs Debian chromium when missing)
test: $(VENV)/.dev
	@command -v chromium >/dev/null 2>&1 || bash .ci/install-chromium
	$(PY) -m ruff check .
	$(PY) -m mypy core
	$(PY) -m pytest -n 2 --dist loadgroup

lint: $(VENV)/.dev
	$(PY) -m ruff check .

## bench: planning speed and plan quality tables (see README)
bench: $(VENV)/.dev
	$(PY) bench/bench_planner.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache .ruff_cache .hypothesis
