# The README's two commands: `make demo` and `make test`. Each works on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dbgan-installed
TORCH_VERSION ?= 2.13.0
# The CPU build by default; for the CUDA build: make TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: setup demo test bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch is installed only if none is importable yet, so a CUDA build you already have stays.
# A torch wheel already on this machine (pip's find-links) is used as it is; otherwise it
# comes from TORCH_INDEX (PyPI's plain `torch` is the CUDA build on Linux).
$(STAMP): pyproject.toml | $(BIN)/python
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  if $(BIN)/pip install --no-index --no-deps "torch==$(TORCH_VERSION)" >/dev/null 2>&1; then \
	    echo "torch==$(TORCH_VERSION) from a wheel on this machine"; \
	    $(BIN)/pip install "torch==$(TORCH_VERSION)"; \
	  else \
	    echo "torch==$(TORCH_VERSION) from $(TORCH_INDEX)"; \
	    $(BIN)/pip install "torch==$(TORCH_VERSION)" --index-url $(TORCH_INDEX); \
	  fi; \
	fi
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/dbgan demo --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/blur_speed.py
	$(BIN)/python benchmarks/infer_speed.py --quick
	$(BIN)/python benchmarks/train_speed.py --quick

clean:
	rm -rf $(VENV) runs demo_out
