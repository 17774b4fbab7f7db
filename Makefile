# ARCOSegment — `make demo` runs the main job, `make test` the test suite.
# Each target creates the virtual environment (.venv) on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.demo-stamp

.PHONY: demo test clean

$(STAMP): training/pyproject.toml requirements/constraints.txt requirements/test-slicer.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e 'training[dev,bench]' -r requirements/test-slicer.txt
	touch $(STAMP)

$(DEMO_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e 'training[demo]'
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/arcoseg demo --out demo_output

test: $(STAMP)
	$(BIN)/python -m pytest Testing

clean:
	rm -rf $(VENV) demo_output
