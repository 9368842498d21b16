# make install | make demo | make test | make bench | make gpu-check   (Python 3.11; torch and torchvision come from pip, basicsr 1.4.2 is
# built without build isolation so that pip does not pull torch into a build environment; this package is built by
# its setup.py, editable, with the setuptools installed first)
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.basicsr-restore-installed
DEMO   := options/demo/IRNeXt_demo.yml

.PHONY: install demo test bench gpu-check doctor clean-demo

install: $(STAMP)

$(STAMP): setup.py pyproject.toml basicsr_restore_autoload.py basicsr_restore.pth basicsr_restore.start
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade-strategy only-if-needed torch==2.14.1 torchvision==0.29.1 setuptools wheel
	$(BIN)/python -m pip install -q --no-build-isolation --use-pep517 basicsr==1.4.2
	$(BIN)/python -m pip install -q --no-build-isolation -e '.[test]'
	$(BIN)/basicsr-restore doctor > /dev/null || $(BIN)/basicsr-restore doctor
	touch $(STAMP)

demo: install
	test -f datasets/demo/train/gt.lmdb/meta_info.txt || $(BIN)/basicsr-restore prepare demo --out datasets/demo
	$(BIN)/python -m basicsr.train -opt $(DEMO)
	$(BIN)/basicsr-restore report -opt $(DEMO)

test: install
	$(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=25 tests

bench: install
	$(BIN)/basicsr-restore bench --suite --json bench/suite.json --overwrite

gpu-check: install
	$(BIN)/python scripts/gpu_check.py --out gpu-check

doctor: install
	$(BIN)/basicsr-restore doctor
