# The two commands of the README. Both create the virtual environment in .venv (or reuse it
# while requirements.txt is unchanged), so a fresh machine needs only Python 3.11 and make;
# make test adds requirements-test.txt (Ray, for chain.py --ray's tests), make demo does not.
#
#   make demo    generate data, run the three processes for ~3 minutes, draw the plots
#   make test    run the test suite
#   make lint    ruff's pyflakes and bugbear rules (pyproject.toml) over the project's Python
#   make test-loaded  the suite with one busy process per core beside it (by hand, never in CI):
#                does a test assert the machine's speed? (docs/tests.md)
#   make data    get Fashion-MNIST (DATASET=mnist for MNIST): the Debian package as root, else
#                Keras's download; prints where it is (datasets/images.py finds it from there)
#   make browser install Chromium and its driver for tests/test_live.py's browser test (as root,
#                with apt-get; .ci/run does it; without them that one test skips, saying why)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test test-loaded lint venv clean browser data

demo: $(VENV)/installed
	$(PY) demo.py $(ARGS)

test: $(VENV)/tested
	$(PY) -m pytest -q $(ARGS)

lint: $(VENV)/tested
	$(VENV)/bin/ruff check .

# The busy processes are stopped by their PIDs however pytest ends (trap), and only they.
test-loaded: $(VENV)/tested
	@pids=""; trap 'kill $$pids 2>/dev/null' EXIT INT TERM; \
	for i in $$(seq $$(nproc)); do $(PY) -c 'while True: pass' & pids="$$pids $$!"; done; \
	echo "make test-loaded: $$(nproc) busy processes beside the tests (PIDs$$pids)"; \
	$(PY) -m pytest -q $(ARGS)

venv: $(VENV)/installed

DATASET ?= fashion-mnist
data: $(VENV)/installed
	@if [ "$(DATASET)" = fashion-mnist ] && [ ! -d /usr/share/datasets/fashion-mnist ] \
	    && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null \
		 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		     dataset-fashion-mnist >/dev/null)) \
		|| echo "make data: could not install dataset-fashion-mnist; trying Keras's download"; \
	fi
	$(PY) -m datasets.images --name $(DATASET) --fetch

browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "make browser: $$(command -v chromium) and $$(command -v chromedriver) are there"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver >/dev/null) || \
		echo "make browser: could not install Chromium; the browser test will skip"; \
	else \
		echo "make browser: no Chromium, and no apt-get as root to install it; the browser test will skip"; \
	fi

$(VENV)/installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/tested: $(VENV)/installed requirements-test.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

clean:
	rm -rf runs progress plots data .pytest_cache
