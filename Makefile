# The two commands a new user types are `make demo` and `make test`; both install what they need first.
PY ?= .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: demo test lint bench setup unit clean

$(VENV_STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	@touch $(VENV_STAMP)

setup: $(VENV_STAMP)

demo: $(VENV_STAMP)
	.venv/bin/callcenter demo

test: $(VENV_STAMP)
	.venv/bin/callcenter asterisk install
	.venv/bin/python -m pytest -q -ra

unit: $(VENV_STAMP)
	.venv/bin/python -m pytest -q tests/unit tests/socket

lint: $(VENV_STAMP)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports
	.venv/bin/python scripts/events_table.py --check

bench: $(VENV_STAMP)
	.venv/bin/python bench/fastagi.py --quick
	.venv/bin/python bench/ami.py --quick
	.venv/bin/python bench/ivr.py --quick
	.venv/bin/python bench/screen_pop.py --quick
	.venv/bin/python bench/recording_search.py --quick
	.venv/bin/python bench/load.py --quick
	.venv/bin/python bench/load.py --quick --database postgresql

clean:
	rm -rf .venv build *.egg-info
