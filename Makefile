# Two entry points for people (run, test) and one for figures (bench). Each creates or reuses .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/functions:$(CURDIR)
# aws-cdk-lib runs on the machine's Node.js through jsii; its end-of-life banner is noise in test output.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 1

.PHONY: run test bench lint synth token clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

run: $(VENV)/.installed  ## the whole service on 127.0.0.1 with moto and the emulators
	$(PY) -m local

test: $(VENV)/.installed  ## every test: unit, integration (moto + emulators), e2e (HTTP), infrastructure
	$(PY) -m pytest

bench: $(VENV)/.installed  ## prints cold-start, AWS-call, poll-tick and upload figures
	$(PY) -m benchmarks

token: $(VENV)/.installed  ## make token USER=alice [ADMIN=1]: a token for a local user of the running `make run`
ifneq ($(origin USER),command line)
	$(error usage: make token USER=alice [ADMIN=1])
endif
	@$(PY) -m local.token "$(USER)" $(if $(ADMIN),--admin)

lint: $(VENV)/.installed
	$(PY) -m ruff check functions clients local infra tests benchmarks app.py

synth: $(VENV)/.installed  ## CloudFormation template into cdk.out/, no Docker, no AWS credentials
	$(PY) app.py

clean:
	rm -rf $(VENV) cdk.out build .pytest_cache
