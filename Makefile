# Safe-CB Studio. Two commands: `make app` (the web app on http://127.0.0.1:7860), `make test`.
# Both first make sure .venv exists with requirements.txt installed; that step reruns only when
# requirements.txt is newer than the stamp file, so it costs nothing once done.

VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help app test quick

# The fast lane: pure-math and unit tests only (no browser, PostgreSQL, training or bench tests).
QUICK_TESTS := tests/test_metrics.py tests/test_space_edit.py tests/test_stopping.py tests/test_world.py \
	tests/test_config.py tests/test_layering.py tests/test_io.py tests/test_input_checks.py tests/test_cli_errors.py \
	tests/test_figures_report.py

help:
	@echo "make app    run the web app on the shipped toy model (http://127.0.0.1:7860)"
	@echo "make test   run the test suite"
	@echo "make quick  run the fast subset (under 2 min): math and unit tests, no browser/PostgreSQL/training/bench"

app: $(STAMP)
	$(PYTHON) app.py

# Two pytest workers, one test file each at a time (the browser and fault files keep their order).
test: $(STAMP)
	$(PYTHON) -m pytest -n 2 --dist loadfile

# The same two workers on $(QUICK_TESTS) only.
quick: $(STAMP)
	$(PYTHON) -m pytest -n 2 --dist loadfile $(QUICK_TESTS)

$(STAMP): requirements.txt
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -r requirements.txt
	@touch $@
