# ctr-magic: `make demo` and `make test` do all their own set-up on a fresh Debian machine (as root).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := containerd runc docker-registry skopeo busybox-static containernetworking-plugins \
	golang-github-containerd-containerd-dev docker.io iptables iproute2 util-linux debootstrap python3-venv \
	golang-github-containerd-cgroups-dev chromium
# Where `make demo` keeps its private containerd and registry (tests use their own).
export CTR_MAGIC_HOME ?= /var/lib/ctr-magic
# The browser test drives Debian's chromium: Playwright must never download a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
OUT ?= out

.PHONY: help deps system-deps python-deps test unit lint demo up down lab protos bench clean test-swarm soak

help:
	@echo "make demo   - install everything, start the private containerd + registry, run the tutorials"
	@echo "make test   - install everything, run unit, integration and notebook tests"
	@echo "make lab    - open JupyterLab on the notebooks (after make demo)"
	@echo "make protos - regenerate ctr_magic/_proto from protos/"
	@echo "make bench  - run the side-by-side benchmarks"
	@echo "make soak   - the reliability suite at full counts (>= 50 fault trials per operation)"

deps: system-deps python-deps

system-deps:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "installing Debian packages: $(APT_PACKAGES)"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES); \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,lab]'
	touch $@

python-deps: $(VENV)/.installed

lint: python-deps
	$(PY) -m ruff check ctr_magic tests bench tools

unit: deps
	$(PY) -m pytest -q tests/unit

test: deps lint
	$(PY) -m pytest -q -p no:cacheprovider tests --nbval notebooks --nbval-sanitize-with notebooks/sanitize.cfg

# The swarm backend's tests alone (a local 3-node cluster; also part of `make test`).
test-swarm: deps
	$(PY) -m pytest -q -p no:cacheprovider tests/swarm tests/unit/test_swarm_specs.py

up: deps
	$(PY) -m ctr_magic.cli up

down:
	$(PY) -m ctr_magic.cli down

demo: deps
	$(PY) tools/demo.py --out $(OUT)

lab: deps
	$(VENV)/bin/jupyter lab --allow-root --ip 127.0.0.1 --no-browser notebooks

protos: python-deps
	$(PY) tools/gen_protos.py

bench: deps
	$(PY) -m bench

# The reliability suite with the counts the README reports: 50 seeded fault trials per operation,
# a 30 s daemon outage; `make test` runs the same tests with a few trials each.
SOAK_TRIALS ?= 50
soak: deps
	CTR_MAGIC_FAULT_TRIALS=$(SOAK_TRIALS) CTR_MAGIC_OUTAGE_SECONDS=30 \
		$(PY) -m pytest -q -p no:cacheprovider -s --timeout 1800 tests/reliability

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
