# The tutorial's commands. `make help` lists them.
# Another Python or venv: make install PYTHON=python3.10 VENV=.venv-3.10 (what .ci/run does).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# `make kafka PORT=9192` picks another port. A PORT in your environment (some tools set one)
# does not: only KAFKA_PORT, which `python -m broker` reads too.
PORT   := $(or $(KAFKA_PORT),9092)
NODES  ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=
# A topic of its own for every `make demo`: see the demo target.
DEMO_TOPIC := demo-$(shell date +%Y%m%d-%H%M%S)
# The scripts connect to 127.0.0.1:9092 unless told otherwise: tell them when PORT differs.
DEMO_ENV := $(if $(KAFKA_BOOTSTRAP_SERVERS),,$(if $(filter-out 9092,$(PORT)),KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(PORT) ))

.PHONY: help install kafka kafka-stop kafka-status kafka-kill test demo bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv and install the pinned requirements

# Reinstall only when a requirements file changed.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

kafka: install  ## start Kafka on 127.0.0.1:9092 in the background (PORT=N: another port, NODES=3: a cluster)
	$(PY) -m broker start --port $(PORT)$(if $(NODES), --nodes $(NODES))

kafka-stop: install  ## stop it (WIPE=1: delete its data too)
	$(PY) -m broker stop$(if $(WIPE), --wipe)

# `python -m broker status` exits with 3 when Kafka is not running, for scripts; to make,
# "not running" is an answer, not an error.
kafka-status: install  ## is it running? pid, address, version, log
	@$(PY) -m broker status || [ $$? -eq 3 ]

kafka-kill: install  ## kill -9 one node of this cluster, as a power cut would (NODE=2)
	$(PY) -m broker kill --node $(or $(NODE),$(error say which node: make kafka-kill NODE=2))

test: install  ## run every test against a real broker (its own, or KAFKA_BOOTSTRAP_SERVERS if set)
	$(PY) -m pytest $(PYTEST_ARGS)

# The demo sends the six example events to a topic of its own (demo-<date>-<time>) and reads
# that topic from the beginning: it shows exactly what it just sent, every time, whatever the
# tutorial's topic `sample` already holds, and it moves no group's committed offsets there.
# (Reading `sample` after its end offsets would need offsets the scripts do not take.)
# A Kafka that already answers on PORT (Docker, a download) is used as it is.
demo: install  ## start Kafka if none answers, send the six example events, and read them back
	@$(if $(KAFKA_BOOTSTRAP_SERVERS),echo "using the Kafka in KAFKA_BOOTSTRAP_SERVERS: $(KAFKA_BOOTSTRAP_SERVERS)",$(PY) -m broker start --reuse --port $(PORT))
	$(DEMO_ENV)$(PY) producer.py --count 6 --topic $(DEMO_TOPIC)
	$(DEMO_ENV)$(PY) consumer.py --topic $(DEMO_TOPIC) --from-beginning --max-messages 6 --timeout-ms 10000

bench: install  ## time the scripts against bare kafka-python and kcat (~8 min); writes bench/results.md
	$(PY) -m bench $(BENCH_ARGS)

clean:  ## delete the venv and caches (not Kafka's data: see kafka-stop WIPE=1)
	rm -rf $(VENV) .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
