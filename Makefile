# The two commands of the README. Both create the virtual environment in .venv (or reuse it
# while requirements.txt is unchanged), so a fresh machine needs only Python 3.11 and make.
#
#   make demo    generate data, run the three processes for ~3 minutes, draw the plots
#   make test    run the test suite

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test venv clean

demo: $(VENV)/installed
	$(PY) demo.py $(ARGS)

test: $(VENV)/installed
	$(PY) -m pytest -q $(ARGS)

venv: $(VENV)/installed

$(VENV)/installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

clean:
	rm -rf runs progress plots data .pytest_cache
