# Two commands do everything: `make demo` and `make test` (each does all set-up first).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sayso-installed
# portaudio19-dev builds pyaudio; build-essential and cmake build llama-cpp-python;
# espeak-ng speaks test utterances; alsa-utils gives `aplay -l` for finding devices;
# systemd gives systemd-analyze, which the tests run on the unit; libspeexdsp1 cancels echo (aec.py).
SYS_PKGS := portaudio19-dev python3-dev python3-venv build-essential cmake espeak-ng alsa-utils systemd libspeexdsp1

.PHONY: setup system-packages models test test-fast demo lint typecheck clean install uninstall

setup: $(STAMP)

system-packages:
	@if ! command -v dpkg-query >/dev/null; then echo "not a Debian system: install PortAudio headers, a C compiler and cmake yourself"; exit 0; fi; \
	missing=$$(for p in $(SYS_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing system packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "missing system packages:" $$missing; echo "run: sudo apt-get install" $$missing; exit 1; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pip's wheel cache keeps the llama-cpp-python build (about 7 minutes on 2 cores): never --no-cache-dir.
$(STAMP): pyproject.toml | system-packages $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $@

# beckett-reading (0.3 MB): the suite's recording of a real person, for the simulator.
models: setup
	$(BIN)/sayso models fetch --recording beckett-reading

test: models
	$(BIN)/python -m pytest

# Without the tests marked slow (the ones that load a real model or run the whole pipeline on them).
test-fast: models
	$(BIN)/python -m pytest -m "not slow"

demo: models
	$(BIN)/sayso demo

# On a Pi: sayso as a systemd service (see systemd/install.sh and hardware.md).
install:
	bash systemd/install.sh install

uninstall:
	bash systemd/install.sh uninstall

lint: setup
	$(BIN)/ruff check device tests

typecheck: setup
	$(BIN)/mypy device/sayso

clean:
	rm -rf $(VENV) demo-out
