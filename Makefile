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
MODELS ?= models
# The CLIP vocabulary for text_to_image's in-graph tokenizer; without one, sd-export downloads KerasCV's copy.
CLIP_VOCAB ?= $(wildcard ../shared/clip/bpe_simple_vocab_16e6.txt.gz)

# Client and local-server options.
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

EXPORT_FLAGS = --height $(HEIGHT) --width $(WIDTH) --models-dir $(MODELS) \
	$(if $(CKPT),--ckpt $(CKPT)) $(if $(TEXT_ENCODER),--text-encoder $(TEXT_ENCODER)) \
	$(if $(DECODER),--decoder $(DECODER)) $(if $(VERSION),--version $(VERSION)) \
	$(if $(LABEL),--label $(LABEL)) $(if $(RANDOM_WEIGHTS),--random-weights) \
	$(if $(CLIP_VOCAB),--clip-vocab $(CLIP_VOCAB))

.PHONY: help install install-system export serve serve-cpu serve-local generate demo test bench clean

help:
	@echo "make install            create .venv and install export/, serving/, client/ and the test tools"
	@echo "make export CKPT=x.h5   export text_encoder, diffusion_model, decoder into $(MODELS)/ (a new version)"
	@echo "                        also: TEXT_ENCODER= DECODER= HEIGHT= WIDTH= VERSION= LABEL= RANDOM_WEIGHTS=1 MODELS="
	@echo "make serve              docker compose up: TF Serving on a GPU (REST 8501, gRPC 8500, on 127.0.0.1)"
	@echo "make serve-cpu          the same with TF Serving's CPU image"
	@echo "make serve-local        the local stand-in server (no Docker, no GPU) on the same ports"
	@echo "                        on a CPU, TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1 make serve-local: faster, twice the memory"
	@echo "make generate PROMPT=.. the client against whichever server is up (URL=$(URL))"
	@echo "make demo               export (random weights if none can be had), serve locally, generate, stop"
	@echo "make test               install, then run the whole test suite"
	@echo "make bench              benchmarks: exported chain vs KerasCV, client transports, local server, samplers"

# The virtualenv is rebuilt when a dependency list changes.
$(BIN)/.installed: export/pyproject.toml serving/pyproject.toml client/pyproject.toml tests/requirements.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ./export -e ./serving -e "./client[local]" -r tests/requirements.txt
	touch $@

install: $(BIN)/.installed install-system

# curl (a test drives the server with it) and Debian's docker-compose (validates compose.yaml without an engine).
install-system:
	@missing=""; command -v curl >/dev/null || missing="$$missing curl"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
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

# The demo exports at 256x256 unless HEIGHT/WIDTH are given on the command line (512 takes long on a CPU).
demo: $(BIN)/.installed
	$(BIN)/python -m sd_serving.demo --models-dir $(MODELS) --out $(OUT) --prompt "$(PROMPT)" \
		--steps $(STEPS) --seed $(SEED) -n $(N) $(if $(RANDOM_WEIGHTS),--random-weights) \
		$(if $(CLIP_VOCAB),--clip-vocab $(CLIP_VOCAB)) \
		$(if $(filter command line,$(origin HEIGHT)),--height $(HEIGHT)) \
		$(if $(filter command line,$(origin WIDTH)),--width $(WIDTH))

test: install
	$(BIN)/python -m pytest tests

bench: $(BIN)/.installed
	$(BIN)/python tests/bench/bench_export.py
	$(BIN)/python tests/bench/bench_client.py
	$(BIN)/python tests/bench/bench_server.py
	$(BIN)/python tests/bench/bench_samplers.py

clean:
	rm -rf $(VENV) $(OUT)
