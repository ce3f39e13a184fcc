# genp2p: `make demo` shows it working, `make test` tests it. `make help` lists the rest.

CARGO  ?= cargo
CONFIG ?= conf/config.xml
MANAGER_CONFIG ?= conf/manager.xml
N      ?= 5
RELEASE := target/release

.PHONY: help build release test demo manager servant clean \
        lan-up lan-down lan-demo lan-test lan lan-scale bench stress sim fuzz deps

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## check that a Rust toolchain is there
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }

build: deps ## debug build of both binaries
	$(CARGO) build

release: deps ## optimised build of both binaries
	$(CARGO) build --release

test: deps ## unit and end-to-end tests (no root needed)
	$(CARGO) test --all-targets

demo: release ## a manager and three servants on this machine, chatting, then a clean stop
	@bash scripts/demo.sh

manager: release ## run the connection manager (MANAGER_CONFIG=conf/manager.xml)
	$(RELEASE)/connection-manager --config $(MANAGER_CONFIG)

servant: release ## run a servant on this terminal (CONFIG=conf/config.xml)
	$(RELEASE)/servant --config $(CONFIG)

LAB_PY = python3 lab/lab.py

lan-up: release ## N hosts in network namespaces on one bridge (root; N=5)
	@$(LAB_PY) up $(N)

lan-demo: release ## manager on host 1, a servant on every other host, chatting (root)
	@$(LAB_PY) demo $(N)

lan-test: release ## every LAN scenario in lab/scenarios/, PASS or FAIL each (root)
	@$(LAB_PY) test

lan: ## one LAN scenario: make lan SCENARIO=vanish (without SCENARIO: the list) (root)
	@if [ -z "$(SCENARIO)" ]; then $(LAB_PY) list; exit 2; fi
	@$(LAB_PY) check $(SCENARIO)
	@$(MAKE) --no-print-directory release
	@$(LAB_PY) test $(SCENARIO)

lan-down: ## remove everything the lab made (safe to repeat)
	@$(LAB_PY) down

SCALE_N = $(if $(filter command line,$(origin N)),$(N),50)
lan-scale: deps ## N servants (default 50) on their own loopback addresses: lines lost, doubled, late
	$(CARGO) build --release --quiet --bins --example lan_scale
	@ulimit -n 65536 2>/dev/null || ulimit -n $$(ulimit -Hn) 2>/dev/null; \
	$(RELEASE)/examples/lan_scale --servants $(SCALE_N)

bench: release ## measure genp2p beside its baselines (QUICK=1 for about a minute)
	@bash bench/run.sh

SERVANTS ?= 10000,100000
sim: deps ## the overlay's protocol for 10,000 and 100,000 simulated servants, Plumtree and flooding
	@mkdir -p bench/out && rm -f bench/out/sim.jsonl
	$(CARGO) run --release --example sim -- --servants $(SERVANTS) --flood \
		--out bench/out/sim.jsonl --md bench/SIM.md
	@target/release/examples/sim --servants 60 --dot bench/out/overlay.dot > /dev/null 2>&1
	@command -v neato > /dev/null || apt-get install -y -qq graphviz > /dev/null 2>&1 || true
	@if command -v neato > /dev/null; then neato -Tsvg bench/out/overlay.dot > bench/overlay.svg && echo "sim: wrote bench/overlay.svg"; \
	else echo "sim: bench/overlay.svg needs graphviz (apt-get install graphviz)"; fi

stress: release ## floods, churn and a lost manager on loopback; a table of what survived
	@bash scripts/stress.sh

clean: ## remove build output
	$(CARGO) clean

fuzz: ## run each fuzz target for FUZZ_SECONDS (default 60) with cargo-fuzz
	@bash fuzz/run.sh
