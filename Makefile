# dossier: `make demo` builds the sample dossier, `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test sample compare-sample system-deps clean

$(STAMP): pyproject.toml
	bash scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch and torchvision pinned: these versions are the ones on local disk here.
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dossier build examples/digits.yaml --out build/digits

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Regenerate the committed sample report from a fresh build, and the README's screenshots of it;
# then the committed sample comparison (which reads build/digits' cached results).
sample: demo
	rm -rf sample_reports/digits
	mkdir -p sample_reports
	cp -r build/digits sample_reports/digits
	$(BIN)/python scripts/screenshots.py sample_reports/digits docs
	$(MAKE) compare-sample
	rm -rf sample_reports/compare-digits
	cp -r build/compare-digits sample_reports/compare-digits

# The sample model against its own earlier checkpoint (epoch 18 of the same run): what training
# changed, unit by unit. Reuses build/digits' cached results when `make demo` ran before. No time
# budget: a loaded machine's estimate must not change what the committed sample shows.
compare-sample: $(STAMP)
	$(BIN)/dossier compare examples/digits-early.yaml examples/digits.yaml --budget none --heatmaps 12 --out build/compare-digits

system-deps:
	bash scripts/install-system-deps.sh --browser

clean:
	rm -rf build test-artifacts
