# The README's two commands: `make demo` and `make test`. Each works on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dbgan-installed

.PHONY: setup demo test bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Install torch==2.13.0 (CPU) only if no torch is importable yet, so a user's CUDA build stays.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "torch==2.13.0"
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
