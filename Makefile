# Stable Diffusion v1.4 (KerasCV) on TensorFlow Serving. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Export options (sd-export takes the same as flags). RANDOM_WEIGHTS=1, not RANDOM: RANDOM is special in bash.
CKPT ?=
TEXT_ENCODER ?=
DECODER ?=
HEIGHT ?= 512
WIDTH ?= 512
VERSION ?=
LABEL ?=
RANDOM_WEIGHTS ?=
# float32 (default: KerasCV's images), bfloat16 or float16: the dtype the weights are stored and computed in.
PRECISION ?= float32
MODELS ?= models
# Another CLIP vocabulary file for the tokenizers; by default the copy shipped in sd_export and sd_client is used.
CLIP_VOCAB ?=

# Client and local-server options. LABELS: version labels the page offers (TF Serving cannot list them).
PROMPT ?= a photograph of an astronaut riding a horse
URL ?= http://127.0.0.1:8501
OUT ?= out
STEPS ?= 50
SEED ?= 42
N ?= 1
REST_PORT ?= 8501
GRPC_PORT ?= 8500
# models.config serves the three split models; text_to_image.config the one-request model (one or the other).
MODEL_CONFIG ?= models.config
UI_HOST ?= 127.0.0.1
UI_PORT ?= 7860
LABELS ?=

EXPORT_FLAGS = --height $(HEIGHT) --width $(WIDTH) --models-dir $(MODELS) --precision $(PRECISION) \
	$(if $(CKPT),--ckpt $(CKPT)) $(if $(TEXT_ENCODER),--text-encoder $(TEXT_ENCODER)) \
	$(if $(DECODER),--decoder $(DECODER)) $(if $(VERSION),--version $(VERSION)) \
	$(if $(LABEL),--label $(LABEL)) $(if $(RANDOM_WEIGHTS),--random-weights) \
	$(if $(CLIP_VOCAB),--clip-vocab $(CLIP_VOCAB))

.PHONY: help install install-system export serve serve-cpu serve-local generate ui demo test bench clean

help:
	@echo "make install            create .venv and install export/, serving/, client/ and the test tools"
	@echo "make export CKPT=x.h5   export text_encoder, diffusion_model, decoder into $(MODELS)/ (a new version)"
	@echo "                        also: TEXT_ENCODER= DECODER= HEIGHT= WIDTH= VERSION= LABEL= RANDOM_WEIGHTS=1 MODELS="
	@echo "                        PRECISION=bfloat16|float16: half the memory (default float32)"
	@echo "make serve              docker compose up: TF Serving on a GPU (REST 8501, gRPC 8500, on 127.0.0.1)"
	@echo "make serve-cpu          the same with TF Serving's CPU image"
	@echo "make serve-local        the local stand-in server (no Docker, no GPU) on the same ports"
	@echo "                        on a CPU: weight cache on by default for one bfloat16 version (README, CPU speed)"
	@echo "make generate PROMPT=.. the client against whichever server is up (URL=$(URL))"
	@echo "make ui                 the web page and the AUTOMATIC1111 API on http://127.0.0.1:$(UI_PORT)/ (URL=, LABELS=)"
	@echo "make demo               export (random weights if none can be had), serve locally, generate, stop"
	@echo "make test               install, then run the whole test suite"
	@echo "make bench              benchmarks: exported chain vs KerasCV, client transports, local server, samplers,"
	@echo "                        precision, replicas"

# The virtualenv is rebuilt when a dependency list changes.
$(BIN)/.installed: export/pyproject.toml serving/pyproject.toml client/pyproject.toml tests/requirements.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ./export -e ./serving -e "./client[local,ui]" -r tests/requirements.txt
	touch $@

install: $(BIN)/.installed install-system

# curl (a test drives the server with it), Debian's docker-compose (validates compose.yaml without an engine),
# Debian's chromium with its chromedriver (a test drives the web page in a real browser; no driver download) and
# kubectl (its built-in kustomize renders kubernetes/; Debian's own kubernetes-client is too old for it, so kubectl
# comes from an apt source that has it, e.g. pkgs.k8s.io or Google Cloud's, when one is configured).
install-system:
	@missing=""; command -v curl >/dev/null || missing="$$missing curl"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v kubectl >/dev/null || { apt-cache show kubectl >/dev/null 2>&1 && missing="$$missing kubectl" || \
	  echo "install-system: please install kubectl >= 1.27 (https://kubernetes.io/docs/tasks/tools/): the kubernetes/ tests need it"; }; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "install-system: please install$$missing (their tests fail without them)"; fi; \
	fi

export: $(BIN)/.installed
	$(BIN)/sd-export $(EXPORT_FLAGS)

serve:
	SD_MODEL_CONFIG=$(MODEL_CONFIG) MODELS=$(abspath $(MODELS)) docker compose up serving

serve-cpu:
	SD_MODEL_CONFIG=$(MODEL_CONFIG) MODELS=$(abspath $(MODELS)) docker compose --profile cpu up serving-cpu

serve-local: $(BIN)/.installed
	$(BIN)/sd-model-server --port=$(GRPC_PORT) --rest_api_port=$(REST_PORT) \
		--model_config_file=$(MODELS)/$(MODEL_CONFIG) --rest_api_timeout_in_ms=900000

generate: $(BIN)/.installed
	$(BIN)/sd-client generate "$(PROMPT)" --url $(URL) -n $(N) --steps $(STEPS) --seed $(SEED) --out $(OUT) \
		$(if $(LABEL),--label $(LABEL)) $(if $(VERSION),--version $(VERSION)) $(if $(CLIP_VOCAB),--vocab $(CLIP_VOCAB))

ui: $(BIN)/.installed
	$(BIN)/sd-client ui --url $(URL) --host $(UI_HOST) --port $(UI_PORT) $(foreach label,$(LABELS),--label $(label)) \
		$(if $(CLIP_VOCAB),--vocab $(CLIP_VOCAB))

# The demo exports at 256x256 unless HEIGHT/WIDTH are given on the command line (512 takes long on a CPU).
demo: $(BIN)/.installed
	$(BIN)/python -m sd_serving.demo --models-dir $(MODELS) --out $(OUT) --prompt "$(PROMPT)" \
		--steps $(STEPS) --seed $(SEED) -n $(N) $(if $(RANDOM_WEIGHTS),--random-weights) \
		$(if $(CLIP_VOCAB),--clip-vocab $(CLIP_VOCAB)) \
		$(if $(filter command line,$(origin HEIGHT)),--height $(HEIGHT)) \
		$(if $(filter command line,$(origin WIDTH)),--width $(WIDTH))

# Two runs: the precision tests hold a second, half-precision set of the real models and run KerasCV's mixed
# precision beside them; after the rest of the suite in the same process, that passes this machine's memory. Each run
# has two workers: one takes every test of the real architectures, the other the rest (tests/conftest.py).
PYTEST_WORKERS = -n 2 --dist loadgroup
test: install
	$(BIN)/python -m pytest $(PYTEST_WORKERS) tests --ignore=tests/precision
	$(BIN)/python -m pytest $(PYTEST_WORKERS) tests/precision

bench: $(BIN)/.installed
	$(BIN)/python tests/bench/bench_export.py
	$(BIN)/python tests/bench/bench_client.py
	$(BIN)/python tests/bench/bench_server.py
	$(BIN)/python tests/bench/bench_samplers.py
	$(BIN)/python tests/bench/bench_replicas.py
	$(BIN)/python tests/bench/bench_precision.py --size 128 --steps 2 6 --rounds 2
	$(BIN)/python tests/bench/bench_precision.py --size 512 --steps 2 6 --rounds 1

clean:
	rm -rf $(VENV) $(OUT)
