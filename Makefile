# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA := ../shared/data

.PHONY: run test install lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The servers the tests run for real (started by fixtures on free loopback ports): NATS
# JetStream and PostgreSQL, nftables with iproute2 for the firewall connector's network
# namespaces, slapd for the directory connector, and the live-fire lab's services (ulogd2,
# openssh-server, nginx, dnsmasq, iodine) and attack tools (nmap, hydra, gobuster, curl), and
# Chromium for the console's browser tests (Playwright drives Debian's build: no download); from
# Debian, installed when missing (as root, as CI runs).
SERVERS := $(VENV)/.servers
$(SERVERS): $(STAMP) Makefile
	@missing=""; \
	command -v nats-server >/dev/null 2>&1 || missing="$$missing nats-server"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v nft >/dev/null 2>&1 || missing="$$missing nftables"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v slapd >/dev/null 2>&1 || missing="$$missing slapd ldap-utils"; \
	command -v ulogd >/dev/null 2>&1 || missing="$$missing ulogd2"; \
	command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing="$$missing dnsmasq-base"; \
	command -v iodined >/dev/null 2>&1 || [ -x /usr/sbin/iodined ] || missing="$$missing iodine"; \
	for tool in nmap hydra gobuster curl; do \
		command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; \
	done; \
	command -v logger >/dev/null 2>&1 || missing="$$missing bsdutils"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "install as root:$$missing"; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	touch $@

run: $(STAMP)
	@if [ -d $(DATA)/windows ] && [ -d $(DATA)/sigma/rules ]; then \
		$(BIN)/vigil intel import $(DATA)/threat_intel/maltrail-subset \
			$(DATA)/threat_intel/misp-feed-eset $(DATA)/threat_intel/stix21-oasis-examples \
			$(DATA)/threat_intel/unit42-playbooks-stix20 && \
		$(BIN)/vigil serve --demo --console-token admin $(foreach d,$(wildcard $(DATA)/sigma/rules*),--rules $(d)) \
			--feed $(DATA)/windows --feed $(DATA)/linux --feed $(DATA)/network \
			--feed $(DATA)/cloud; \
	else \
		echo "Reference data not found in $(DATA): the server with its own rules and the demo."; \
		$(BIN)/vigil serve --demo --console-token admin; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy src

pytest: $(STAMP) $(SERVERS)
	$(BIN)/pytest -q -n 2

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/scan.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/intel.py
	$(BIN)/python bench/hunt.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/hostile.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
