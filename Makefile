# The two set-up commands of the README: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install system-deps demo test bench clean

# System programs the tests use: Debian chromium renders the HTML report, espeak-ng speaks test sentences.
# Installed when missing and apt-get is usable (root); otherwise the tests that need them skip and say why.
SYSTEM_PROGRAMS := chromium espeak-ng
system-deps:
	@missing=""; for p in $(SYSTEM_PROGRAMS); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing$$missing (needs root and apt-get); tests that use them will skip"; fi; \
	fi

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

test: install system-deps
	$(VENV)/bin/pytest -q

bench: install
	$(PY) benchmarks/entropy.py

clean:
	rm -rf $(VENV) demo-out
