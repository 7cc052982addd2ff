# The whole set-up: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv when missing and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# torch goes in the same pip command as the rest: otherwise torch-pruning pulls a CUDA torch.
$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install torch==2.13.0 -e '.[test,tflite]'
	$(BIN)/pip install --no-deps pytorchvideo==0.1.5 fvcore iopath
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgevid demo

# The report test renders the page in headless Chromium (Debian's package); installed when missing
# and this user may install packages, otherwise that one test skips with the reason.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the report render test will skip"; }

# `make test` runs every test, the slow ones too (zoo-wide converters, pruning, QAT, simulator
# parity, the quick demo end to end: about 40 minutes on 2 cores); this is what CI runs.
# `make test-fast` leaves out the tests marked slow (about 10 minutes). A test hung past 20
# minutes fails.
test: $(STAMP) chromium
	$(BIN)/python -m pytest -q --durations=25 --timeout 1200

test-fast: $(STAMP) chromium
	$(BIN)/python -m pytest -q --durations=20 -m "not slow" --timeout 1200

clean:
	rm -rf $(VENV) build *.egg-info
