# Two commands for a fresh machine:  `make run` (the dashboard) and `make test` (everything CI runs).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test lint bench samples fidelity screenshots clean

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
	$(PY) -m core fuzz --seconds 60 --seed 20261201 --out artifacts/fuzz  # every policy; fails on an invalid plan or crash

lint: $(VENV)/.dev
	$(PY) -m ruff check .

## bench: planning speed and plan quality tables (see README)
bench: $(VENV)/.dev
	$(PY) bench/bench_planner.py

## fidelity: re-measure PyTorch (CPU build, own venv $(TORCH_VENV)), regenerate the torch fixtures, run their tests
TORCH_VENV ?= .torchvenv
fidelity: $(VENV)/.dev
	test -x $(TORCH_VENV)/bin/python || $(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet 'torch==2.13.0' 'transformers>=4.45,<6' numpy onnx pytest hypothesis
	$(TORCH_VENV)/bin/python bench/fidelity.py --measure
	for m in resnet18 small_llama; do \
		$(TORCH_VENV)/bin/python -m core import-torch bench/torch_entries/$$m.py -o tests/data/torch/$$m-train.json; done
	$(TORCH_VENV)/bin/python -m pytest -q tests/test_torch_import.py tests/test_fidelity.py

## screenshots: refresh docs/img/ from a browser run (tests alone only write artifacts/screenshots/)
screenshots: $(VENV)/.dev
	@command -v chromium >/dev/null 2>&1 || bash .ci/install-chromium
	TIERPLAN_UPDATE_SCREENSHOTS=1 $(PY) -m pytest tests/e2e/test_dashboard.py -q -k smoke

clean:
	rm -rf $(VENV) $(TORCH_VENV) artifacts .pytest_cache .ruff_cache .hypothesis
