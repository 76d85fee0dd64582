# Resident data hub — everything a fresh machine (Python 3.11 + make) needs.
#   make demo   install everything, then run `residents demo`
#   make test   install everything, then run the whole test suite
PYTHON ?= python3.11
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
UV_VERSION := 0.13.8
VENV   := .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install demo test bench bench-scale bench-engines clean lint

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --compile-bytecode: every command starts from compiled modules even where the
# environment sets PYTHONDONTWRITEBYTECODE (otherwise each `residents` call would
# recompile pandas, duckdb and prefect: seconds of start-up per command).
$(VENV)/.installed: $(UV) pyproject.toml uv.lock Makefile
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	$(VENV)/bin/python -m compileall -q schemas connectors pipelines warehouse synth webapp *.py
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/residents demo

test: install
	$(VENV)/bin/python -m pytest -n 2 --durations=25 $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/python tests/benchmarks/bench_sync.py $(BENCH_ARGS)

bench-scale: install
	$(VENV)/bin/python tests/benchmarks/bench_scale.py $(BENCH_ARGS)

bench-engines: install
	$(VENV)/bin/python tests/benchmarks/bench_engines.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache demo_output
