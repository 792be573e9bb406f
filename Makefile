# The tutorial's commands. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 9092
NODES  ?= 1
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help install kafka kafka-stop kafka-status test demo bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv and install the pinned requirements

# Reinstall only when a requirements file changed.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

kafka: install  ## start Apache Kafka on 127.0.0.1:$(PORT) in the background (NODES=3: a cluster)
	$(PY) -m broker start --port $(PORT)$(if $(filter-out 1,$(NODES)), --nodes $(NODES))

kafka-stop: install  ## stop it (add WIPE=1 to delete its data too)
	$(PY) -m broker stop$(if $(WIPE), --wipe)

kafka-status: install  ## is it running?
	@$(PY) -m broker status

test: install  ## run every test against a real broker (its own, or $$KAFKA_BOOTSTRAP_SERVERS)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install  ## start Kafka if needed, send the example events, then read them back
	@if [ -z "$$KAFKA_BOOTSTRAP_SERVERS" ]; then $(PY) -m broker start --port $(PORT); fi
	$(PY) producer.py
	$(PY) consumer.py --from-beginning --timeout-ms 5000

bench: install  ## time the scripts against bare kafka-python and kcat (~8 min); writes bench/results.md
	$(PY) -m bench $(BENCH_ARGS)

clean:  ## delete the venv and caches (not Kafka's data: see kafka-stop WIPE=1)
	rm -rf $(VENV) .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
