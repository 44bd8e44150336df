# Two entry points for people (run, test), one for figures (bench) and one for the documentation site (docs). Each creates or reuses .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/functions:$(CURDIR)
# aws-cdk-lib runs on the machine's Node.js through jsii; its end-of-life banner is noise in test output.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 1

# What the gate checks. Lint and format: every Python tree. Types (mypy + pydantic plugin): the trees
# listed in TYPED, each one clean: the production code, and the test fakes held to the ports with what
# builds and checks them (a port change a fake misses fails here).
LINTED := functions local infra rehearsal tests benchmarks app.py $(wildcard clients)
TYPED := functions infra local tests/fakes tests/conftest.py tests/helpers.py tests/contract/test_store_contract.py
LAYER_CONTRACT := tests/unit/test_layers.py

TS_CLIENT := clients/typescript
TS_DEPS := $(TS_CLIENT)/node_modules/.installed

.PHONY: run test test-long test-unit test-fast gate lint typecheck layers bench cost rehearse docs synth token ts-client lock models clean clean-data

# constraints.txt pins the runtime dependencies: the Lambda layer (infra/bundling.py) reads it too.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint constraints.txt -e ".[dev]"
	touch $@

run: $(VENV)/.installed  ## the whole service on 127.0.0.1 with moto and the emulators
	$(PY) -m local

test: gate $(TS_DEPS)  ## the gate, then every test: unit, integration (moto + emulators), e2e (HTTP, CLI, browser, the TypeScript client), infrastructure
	$(PY) -m pytest

test-long: gate $(TS_DEPS)  ## `make test` with the long hypothesis profile and a longer schemathesis run (tens of minutes)
	HYPOTHESIS_PROFILE=long SCHEMATHESIS_MAX_EXAMPLES=100 $(PY) -m pytest

test-unit: $(VENV)/.installed  ## tests/unit only: no moto, no emulators, no CDK; a quick property profile (seconds)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-unit} $(PY) -m pytest -p no:schemathesis tests/unit

test-fast: gate  ## the gate, then unit and integration tests (no e2e, no CDK synth)
	$(PY) -m pytest tests/unit tests/integration tests/contract tests/docs

gate: lint typecheck layers  ## what `make test` (and so CI) checks before any test runs

lint: $(VENV)/.installed  ## ruff lint (incl. the complexity limit) and format check
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

typecheck: $(VENV)/.installed  ## mypy with the pydantic plugin on $(TYPED)
	$(PY) -m mypy $(TYPED)

layers: $(VENV)/.installed  ## the import contract: handlers -> use cases -> domain, adapters apart, no `local`
	$(PY) -m pytest -q -p no:cacheprovider $(LAYER_CONTRACT)

bench: $(VENV)/.installed  ## prints cold-start, AWS-call, poll-tick and upload figures
	$(PY) -m benchmarks

cost: $(VENV)/.installed  ## the stack's idle monthly cost from the synthesized template, at list prices
	$(PY) -m benchmarks.cost

rehearse: $(VENV)/.installed  ## cdk synth, deploy on moto's CloudFormation with IAM enforced, run every flow (make test runs it too)
	$(PY) -m rehearsal

docs: $(VENV)/.installed  ## docs/ as a static site in build/site, offline; a broken link or anchor fails it (make test builds it too)
	$(PY) -m mkdocs build --strict

token: $(VENV)/.installed  ## make token USER=alice [ADMIN=1] [EMAIL=a@example.com] [TIER=premium]: a token for a local user of the running `make run`
ifneq ($(origin USER),command line)
	$(error usage: make token USER=alice [ADMIN=1] [EMAIL=alice@example.com] [TIER=premium])
endif
	@$(PY) -m local.token "$(USER)" $(if $(ADMIN),--admin) $(if $(EMAIL),--email "$(EMAIL)") $(if $(TIER),--tier "$(TIER)")

$(TS_DEPS): $(TS_CLIENT)/package-lock.json  ## the TypeScript client's npm packages, exactly as locked
	cd $(TS_CLIENT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

ts-client: $(VENV)/.installed $(TS_DEPS)  ## regenerate clients/typescript/src/schema.d.ts from the API's OpenAPI document
	$(PY) -m local.openapi_document $(TS_CLIENT)/openapi.json
	cd $(TS_CLIENT) && npx openapi-typescript openapi.json -o src/schema.d.ts

models: $(VENV)/.installed  ## GEMINI_API_KEY=... make models: Gemini's models, and the catalog ids it no longer serves or deprecates
	@$(PY) -m local.models

lock: $(VENV)/.installed  ## constraints.txt from the venv's runtime dependencies (after a deliberate upgrade)
	$(PY) -m infra.bundling

synth: $(VENV)/.installed  ## CloudFormation template into cdk.out/, no Docker, no AWS credentials
	$(PY) app.py

clean:
	rm -rf $(VENV) cdk.out build .pytest_cache .mypy_cache .ruff_cache $(TS_CLIENT)/node_modules $(TS_CLIENT)/dist

clean-data:  ## forget what `make run` kept (batches, balances, images, signing key): the next run starts fresh
	rm -rf $(or $(LOCAL_DATA_DIR),.local-data)
