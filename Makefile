# loadtest: the front door. `make loadtest` runs the main job, `make test` the tests.
# Built tools and images live in $(LOADTEST_CACHE), outside the repo, and are reused.

PYTHON ?= python3
VENV ?= .venv
LOADTEST := $(VENV)/bin/loadtest
PYTEST := $(VENV)/bin/pytest
export LOADTEST_CACHE ?= $(HOME)/.cache/loadtest

# The main job's knobs (see README): kind 3-node by default; PROVIDER=local needs no Docker.
PROVIDER ?= kind
NAME ?= loadtest
PROFILE ?= telemetry-v1
AGENTS ?= 100
DURATION ?= 90
NODES ?= 100
PODS_PER_NODE ?= 10
RESULTS ?= results
RUN_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help venv tools tools-status loadtest test test-unit test-integration lint \
        cluster cluster-down cluster-status clean

help:
	@echo "make loadtest   run the main job (PROVIDER=$(PROVIDER) PROFILE=$(PROFILE) AGENTS=$(AGENTS))"
	@echo "make test       run the tests (unit + integration)"
	@echo "make tools      build the pinned Go toolchain into $(LOADTEST_CACHE)"
	@echo "make lint       ruff check, ruff format --check, mypy"

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

# Cluster (created or reused, kept afterwards), inventory, agents under measurement, SLO
# verdict through pytest; exits non-zero on an SLO violation. Results in $(RESULTS)/.
loadtest: tools
	$(LOADTEST) run --provider $(PROVIDER) --name $(NAME) --profile $(PROFILE) \
	    --agents $(AGENTS) --duration $(DURATION) --nodes $(NODES) \
	    --pods-per-node $(PODS_PER_NODE) --out $(RESULTS) $(RUN_ARGS)

test: tools
	$(PYTEST) $(PYTEST_ARGS)

test-unit: venv
	$(PYTEST) -m "not integration and not e2e" $(PYTEST_ARGS)

test-integration: tools
	$(PYTEST) -m integration $(PYTEST_ARGS)

# ruff (lint, then the format check) and mypy (pyproject.toml [tool.mypy]) over all the code.
LINT_PATHS := loadtest tests benchmarks locustfiles
lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy $(LINT_PATHS)

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

# apt, dockerd, debootstrap and chroot need root; a hosted CI runner is not root but has
# sudo (PATH kept, so the Go toolchain set up for the user is found).
ROOT := $(filter 0,$(shell id -u))
SUDO = $(if $(ROOT),,sudo -E env "PATH=$$PATH")

docker:
	$(SUDO) bash clusters/docker/ensure-docker.sh

# The kind node image, built offline from the toolchain and Debian (cached by input hash).
node-image: venv docker
	$(LOADTEST) tools build kubernetes etcd coredns kind cni-plugins crictl
	bash clusters/containerd/build.sh
	$(SUDO) bash clusters/node-image/build.sh
	$(SUDO) bash clusters/node-image/build-haproxy.sh

# PROVIDER=kind: `make cluster` needs Docker and the node image first.
ifeq ($(PROVIDER),kind)
loadtest: node-image
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

# --- rollout gate: compare two agent versions, scaling sweep, incident replay, reports ---
# Each makes its own cluster $(GATE_NAME) on $(PROVIDER) and removes it afterwards, keeping
# the exit code (0: pass; 1: a budget, SLO or the replay's expectation failed).
.PHONY: compare sweep incident report
GATE_NAME ?= gate-$(PROVIDER)
BASELINE ?= telemetry-v1
CANDIDATE ?= telemetry-v2
ROUNDS ?= 3
BUDGETS ?= --budget apiserver_cpu:+10% --budget p99_list:+20%
GATE_ARGS ?= --nodes 30 --agents 30 --duration 30
SIZES ?= 20,50,100
INCIDENT_LARGE ?= 1000
INCIDENT_BETWEEN ?= 100
# A control plane's memory: about twice the API server's resident set with the 1,000-node
# inventory seeded and no agents (~1 GiB measured); under the agents' load it wants 2.7-6.3
# GiB, at 100 nodes 0.3 GiB. Local (a cgroup: needs root) and kind (the API server's static
# pod's limit; kubelet restarts it after an OOM kill, as on a real control plane).
INCIDENT_ARGS ?= $(if $(filter local kind,$(PROVIDER)),--apiserver-memory 2Gi)
GATE_TARGET = --provider $(PROVIDER) --name $(GATE_NAME) --out $(RESULTS)
GATE_DOWN = $(LOADTEST) cluster down --provider $(PROVIDER) --name $(GATE_NAME)

compare: tools
	$(LOADTEST) compare $(GATE_TARGET) --baseline $(BASELINE) --candidate $(CANDIDATE) \
	  --rounds $(ROUNDS) $(BUDGETS) $(GATE_ARGS); rc=$$?; $(GATE_DOWN); exit $$rc

sweep: tools
	$(LOADTEST) sweep $(GATE_TARGET) --profile $(CANDIDATE) --sizes $(SIZES) \
	  --duration 30; rc=$$?; $(GATE_DOWN); exit $$rc

# The replay defaults to the local provider (`make incident PROVIDER=kind`: DNS as pods see it).
incident: PROVIDER = local
incident: tools
	$(LOADTEST) incident $(GATE_TARGET) --profile telemetry-v2 --small 10 \
	  --large $(INCIDENT_LARGE) --between $(INCIDENT_BETWEEN) --pods-per-node 3 \
	  --duration 60 --propagation --restart-dns-at 45 $(INCIDENT_ARGS); rc=$$?; \
	  $(GATE_DOWN); exit $$rc

# APF objects confining the newest failing run's agents of MITIGATE_PROFILE (in results/),
# validated by the API server, then that scenario rerun without and with them on $(NAME).
MITIGATE_PROFILE ?= telemetry-v2
MITIGATE_ARGS ?= --rerun
.PHONY: mitigate
mitigate: tools
	$(LOADTEST) mitigate --profile $(MITIGATE_PROFILE) --provider $(PROVIDER) --name $(NAME) \
	  --out $(RESULTS) $(MITIGATE_ARGS)

# make report DIR=results/<run, comparison or sweep folder>
report: venv
	$(LOADTEST) report $(DIR)

# --- benchmarks (see benchmarks/README.md): figures printed and written to results/bench/ ---
.PHONY: bench bench-seed bench-agents bench-padding
BENCH_SEED_ARGS ?= --nodes 200 --pods-per-node 30 --variants baseline,tuned
BENCH_AGENTS_ARGS ?=
BENCH_PADDING_ARGS ?=

bench-seed: tools
	$(VENV)/bin/python benchmarks/bench_seed.py $(BENCH_SEED_ARGS)

bench-agents: tools refagent
	$(VENV)/bin/python benchmarks/bench_agents.py $(BENCH_AGENTS_ARGS)

# The seeded objects' padding: gzip ratios, API server CPU and bytes per LIST, old vs new.
bench-padding: tools
	$(VENV)/bin/python benchmarks/bench_padding.py $(BENCH_PADDING_ARGS)

# Agents per worker core on Locust's master/worker engine; API server's view vs workers' sum.
.PHONY: bench-workers
BENCH_WORKERS_ARGS ?=
bench-workers: tools
	$(VENV)/bin/python benchmarks/bench_workers.py $(BENCH_WORKERS_ARGS)

# One after the other: two benchmarks at once on 2 cores measure each other.
bench: tools refagent
	$(MAKE) bench-seed
	$(MAKE) bench-agents

# --- where it breaks: a measured break point and the capacity model's forecast ---------
# A search on its own local cluster (removed afterwards): fit runs at MIN and 2xMIN nodes,
# the forecast, then a ladder and bisection to +-10 %; results/<time>-breakpoint-<profile>/.
.PHONY: breakpoint bench-breakpoint
BP_NAME ?= breakpoint-local
BP_PROFILE ?= telemetry-v2
BP_ARGS ?= --min-nodes 50 --max-nodes 2000 --pods-per-node 3 --duration 90
BENCH_BREAKPOINT_ARGS ?=

breakpoint: tools
	$(LOADTEST) breakpoint --provider local --name $(BP_NAME) --out $(RESULTS) \
	  --profile $(BP_PROFILE) $(BP_ARGS); rc=$$?; \
	  $(LOADTEST) cluster down --provider local --name $(BP_NAME); exit $$rc

bench-breakpoint: tools
	$(VENV)/bin/python benchmarks/bench_breakpoint.py $(BENCH_BREAKPOINT_ARGS)
