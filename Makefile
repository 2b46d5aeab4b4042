# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pdr-installed
DEMO := runs/demo

.PHONY: venv demo test build-cuda clean

$(STAMP): pyproject.toml $(wildcard setup.py)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/python tools/train.py --config configs/demo/simvp.yaml --work-dir $(DEMO)/simvp --overwrite
	$(BIN)/python tools/train.py --config configs/demo/simvp_predgs.yaml --work-dir $(DEMO)/simvp_predgs --overwrite
	$(BIN)/python tools/eval.py $(DEMO)/simvp $(DEMO)/simvp_predgs --out $(DEMO)/table.md
	@echo
	@echo "Table: $(DEMO)/table.md"
	@echo "Predicted frames: $(DEMO)/simvp/eval/predictions_test.png, $(DEMO)/simvp_predgs/eval/predictions_test.png"
	@echo "Per-frame metrics, both models: $(DEMO)/table_per_frame.png; training curves: $(DEMO)/*/curves.png"

test: venv
	$(BIN)/python -m pytest -q

build-cuda: venv
	$(BIN)/python -m pdr.render.build

clean:
	rm -rf $(VENV) runs build *.egg-info
