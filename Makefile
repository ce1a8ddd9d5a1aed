# Two entry points for a newcomer: `make study` (set up, then run the default latent-size study)
# and `make test` (set up, then run the test suite). Everything lives in .venv beside this file.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# The MNIST files: an explicit VAELAB_DATA wins; else the shared copy beside this checkout if there
# is one; else vaelab's own per-user cache, where it downloads them.
SHARED_MNIST := $(wildcard ../shared/data/mnist)
VAELAB_DATA ?= $(SHARED_MNIST)
export VAELAB_DATA
STUDY_ARGS ?=
# The suite runs in worker processes, one per core this process may use, at most 4 (pytest-xdist), each test
# module's tests in one worker so that its trained fixtures are built once. Many tests wait on subprocesses and
# imports, so two workers on two cores finish well before one: TEST_WORKERS=0 runs it in this process. Not
# xdist's "auto": it counts the host's physical cores, which in a container can be far more than it may use.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ "$$n" -gt 4 ] && n=4; echo $$n)

.PHONY: setup study test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet "$(TORCH)"
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

study: setup
	$(VENV)/bin/vaelab study $(STUDY_ARGS)

test: setup
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
