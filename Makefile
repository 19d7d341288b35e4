# loadtest: the front door. `make loadtest` runs the main job, `make test` the tests.
# Built tools and images live in $(LOADTEST_CACHE), outside the repo, and are reused.

PYTHON ?= python3
VENV ?= .venv
LOADTEST := $(VENV)/bin/loadtest
PYTEST := $(VENV)/bin/pytest
export LOADTEST_CACHE ?= $(HOME)/.cache/loadtest

PROVIDER ?= local
NAME ?= loadtest-run
PYTEST_ARGS ?=

.PHONY: help venv tools tools-status loadtest test test-unit test-integration lint \
        cluster cluster-down cluster-status clean

help:
	@echo "make loadtest   run the main job (PROVIDER=$(PROVIDER))"
	@echo "make test       run the tests (unit + integration)"
	@echo "make tools      build the pinned Go toolchain into $(LOADTEST_CACHE)"
	@echo "make lint       ruff"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

tools: venv
	$(LOADTEST) tools build

tools-status: venv
	$(LOADTEST) tools status --versions

loadtest: tools
	$(LOADTEST) run --provider $(PROVIDER) --name $(NAME)

test: tools
	$(PYTEST) $(PYTEST_ARGS)

test-unit: venv
	$(PYTEST) -m "not integration and not e2e" $(PYTEST_ARGS)

test-integration: tools
	$(PYTEST) -m integration $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check loadtest tests locustfiles

cluster: tools
	$(LOADTEST) cluster up --provider $(PROVIDER) --name $(NAME) --reuse

cluster-down: venv
	$(LOADTEST) cluster down --provider $(PROVIDER) --name $(NAME)

cluster-status: venv
	$(LOADTEST) cluster list --provider $(PROVIDER)

clean:
	rm -rf $(VENV) results .pytest_cache

# --- kind: Docker engine, offline node image, e2e (see clusters/kind/README.md) ---
.PHONY: docker node-image test-e2e

docker:
	bash clusters/docker/ensure-docker.sh

# The kind node image, built offline from the toolchain and Debian (cached by input hash).
node-image: venv docker
	$(LOADTEST) tools build kubernetes etcd coredns kind cni-plugins crictl
	bash clusters/containerd/build.sh
	bash clusters/node-image/build.sh
	bash clusters/node-image/build-haproxy.sh

# PROVIDER=kind: `make cluster` needs Docker and the node image first.
ifeq ($(PROVIDER),kind)
cluster: node-image
cluster-down cluster-status: docker
endif

# e2e: a real 3-node kind cluster from the local node image (removed at the end).
test-e2e: node-image
	$(PYTEST) -m e2e --loadtest-provider kind --loadtest-cluster loadtest-e2e $(PYTEST_ARGS)

# The client-go reference agent (agents-go/) into $(LOADTEST_CACHE)/bin/refagent.
.PHONY: refagent
refagent: venv
	$(LOADTEST) tools build refagent

# --- benchmarks (see benchmarks/README.md): figures printed and written to results/bench/ ---
.PHONY: bench bench-seed bench-agents
BENCH_SEED_ARGS ?= --nodes 200 --pods-per-node 30 --variants baseline,tuned
BENCH_AGENTS_ARGS ?=

bench-seed: tools
	$(VENV)/bin/python benchmarks/bench_seed.py $(BENCH_SEED_ARGS)

bench-agents: tools refagent
	$(VENV)/bin/python benchmarks/bench_agents.py $(BENCH_AGENTS_ARGS)

# One after the other: two benchmarks at once on 2 cores measure each other.
bench: tools refagent
	$(MAKE) bench-seed
	$(MAKE) bench-agents
