# The two set-up commands of the README: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch and torchvision first, then the rest: this order resolves the pinned trio on this platform.
	$(PY) -m pip install -q torch==2.9.1 torchvision==0.24.1
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) scripts/demo.py

test: install
	$(VENV)/bin/pytest -q

bench: install
	$(PY) benchmarks/entropy.py

clean:
	rm -rf $(VENV) demo-out
