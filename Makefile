# The whole set-up: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv when missing and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

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

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
