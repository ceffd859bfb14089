# One obvious way to develop: these targets are what the README shows and CI runs.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench fuzz

# The environment takes about 7.5 GB (torch's CUDA build alone 5.5 GB): say so before pip
# fills the disk halfway through.
NEED_KB := 7000000

$(BIN)/genarun: pyproject.toml
	@d=$(VENV); while [ ! -d "$$d" ]; do d=$$(dirname "$$d"); done; \
	free=$$(df -Pk "$$d" | awk 'NR==2 {print $$4}'); if [ "$$free" -lt $(NEED_KB) ]; then \
	  echo "genarun's setup needs about 7.5 GB of free disk here; $$((free / 1048576)) GB free." \
	    "Free some space (or set VENV=/a/bigger/disk/.venv) and run make again." >&2; exit 1; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: these wheels are on the machine (other installers download ~3 GB).
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $@

setup: $(BIN)/genarun

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/genarun run examples/story/tree.yaml

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

# A longer hunt than the test run's 60 seeded cases, from a fresh seed each time (hypothesis
# prints the seed and a minimal tree for any failure).
fuzz: setup
	HF_HUB_OFFLINE=1 GENARUN_FUZZ_EXAMPLES=3000 GENARUN_FUZZ_SEED=random $(BIN)/pytest -q tests/test_fuzz.py

lint: setup
	$(BIN)/ruff check genarun tests bench
	$(BIN)/ruff format --check genarun tests bench
	# Type check: the files and strictness are in pyproject.toml ([tool.mypy]).
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/core_templates.py
	$(BIN)/python bench/tda_persistence.py
