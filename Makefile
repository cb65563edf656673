# The two commands a user needs: `make demo` and `make test`. Each sets up .venv if missing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.huma-installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := espeak-ng libespeak-ng-dev sox

.PHONY: setup demo test lint clean triton-env

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py Makefile $(wildcard kernels/*.cuh kernels/*.h kernels/build_ext.py kernels/cpu/*.cpp kernels/cpu/*.h)
	@for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# torch first, pinned: the CPU wheel on disk; anything else downloads gigabytes
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,export,speech,triton,media,cuda,sign]'
	# --no-deps: silero-vad would pull torchaudio; nvidia-pytriton pins numpy<2
	$(PIP) install -q --no-deps silero-vad==6.2.3 nvidia-pytriton==0.7.0
	@touch $@

# make demo [TEXT="..." | WAV=speech.wav] [OUT=demo.mp4]
demo: $(STAMP)
	$(VENV)/bin/huma-rt demo $(if $(WAV),--wav "$(WAV)",$(if $(TEXT),--text "$(TEXT)")) $(if $(OUT),-o "$(OUT)")

lint: $(STAMP)
	$(VENV)/bin/ruff check huma_rt export engines kernels bench tests

test: $(STAMP) lint triton-env
	$(PY) -m pytest -q

# Triton's python-backend models run in their own environment: the bundled 2.51 stub needs
# numpy<2 (with numpy 2 inputs arrive as zeros). Same Python as .venv, so a stub matches it.
TRITON_VENV := .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.huma-installed

triton-env: $(TRITON_STAMP)

$(TRITON_STAMP):
	@test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install -q 'numpy>=1.24,<2' 'onnxruntime>=1.18,<2'
	@touch $@

clean:
	rm -rf $(VENV) $(TRITON_VENV) build dist *.egg-info
