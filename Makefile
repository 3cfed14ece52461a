# rsvheat_mm: every target installs (idempotently) what it needs first.
# RSVHEAT_STACK=official (default: the pinned official OpenMMLab set, .venv) or
# RSVHEAT_STACK=onedl (the OneDL forks, .venv-onedl); README "Installation".
RSVHEAT_STACK ?= official
export RSVHEAT_STACK
ifeq ($(RSVHEAT_STACK),onedl)
VENV ?= .venv-onedl
else
VENV ?= .venv
endif
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint clean

install:
	@RSVHEAT_VENV=$(abspath $(VENV)) bash scripts/install.sh

## The main job on the bundled real samples (CPU is fine, 3-6 min on 2 cores).
demo: install
	$(PY) tools/demo.py

## The whole test suite (12-28 min on 2 CPU cores, by CPU kind).
test: install
	$(PY) -m pytest tests -v -ra $(PYTEST_ARGS)

## The suite without the tests marked slow (end-to-end runs such as the demo).
test-fast: install
	$(PY) -m pytest tests -v -ra -m "not slow" $(PYTEST_ARGS)

## flake8 with the settings of .flake8; fails on any finding.
lint: install
	$(PY) -m flake8 rsvheat_mm tools tests

clean:
	rm -rf work_dirs .pytest_cache build *.egg-info
