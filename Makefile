# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pdr-installed
DEMO := runs/demo

.PHONY: venv demo test build-cuda gpu-check clean

$(STAMP): pyproject.toml $(wildcard setup.py)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip uninstall --quiet -y pdr 2>/dev/null || true  # this project's former distribution name
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/python tools/compare.py --config configs/demo/simvp_predgs.yaml --arms paper \
		--only mse l1_ssim predgs_l1_ssim --work-dir $(DEMO) --no-progress
	@echo
	@echo "Table: $(DEMO)/comparison.md"
	@echo "Predicted frames, the same test sequences for every arm: $(DEMO)/comparison_predictions.png"
	@echo "Per-frame metrics, all arms: $(DEMO)/comparison_per_frame.png; training curves: $(DEMO)/*/curves.png"

test: venv
	$(BIN)/python -m pytest -q

# On a machine with a GPU: tests, benchmarks and a short comparison in one time-boxed command (tools/gpu_check.py).
# GPU_PYTHON=python3 uses an existing environment with a CUDA build of torch instead of .venv.
GPU_PYTHON ?= $(BIN)/python
OUT ?= runs/gpu_check/out
gpu-check: $(if $(filter $(BIN)/python,$(GPU_PYTHON)),venv)
	$(GPU_PYTHON) tools/gpu_check.py --out $(OUT) $(GPU_CHECK_ARGS)

build-cuda: venv
	$(BIN)/python -m pdr.render.build

clean:
	rm -rf $(VENV) runs build *.egg-info
