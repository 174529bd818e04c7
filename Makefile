# Two commands on a fresh machine with only python3 and make:
#   make demo   set everything up, load the demo brand, serve the web chat
#   make test   set everything up and run lint, types, import contracts and the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install demo test lint typecheck contracts pytest bench eval eval-answers lock clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.lock
	$(PIP) install --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/siyu demo

test: lint typecheck contracts pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

# Two test processes, one per core: most tests wait on subprocesses, sockets and databases, not
# the CPU (three processes were faster but made load-sensitive tests flaky; PYTEST_WORKERS=0: one).
PYTEST_WORKERS ?= 2
pytest: $(STAMP)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --durations=15 $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/answer_latency.py
	$(BIN)/python -m bench.callback_ack
	$(BIN)/python -m bench.campaign_fanout
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.embed_batch

# Retrieval quality on the shared FAQ benchmark (needs ../shared/data).
eval: $(STAMP)
	$(BIN)/siyu eval retrieval --faq ../shared/data/faq-bq/faq.jsonl --queries ../shared/data/faq-bq/queries.jsonl

# Retail answers on a freshly generated grocery brand (needs ../shared/data/retail-qa): the 52
# graded member questions (deals, promotion status, prices, stores, FAQ, out of scope), offline.
# The files are written for today in the brand's time zone and the questions asked at its noon.
RETAIL_QA := $(or $(TMPDIR),/tmp)/siyu-retail-qa
TODAY := $(shell TZ=Asia/Shanghai date +%F)
eval-answers: $(STAMP)
	rm -rf $(RETAIL_QA)
	$(PYTHON) ../shared/data/retail-qa/make_kb.py $(RETAIL_QA) --today $(TODAY)
	$(BIN)/siyu eval answers --kb $(RETAIL_QA)/kb --questions $(RETAIL_QA)/questions.jsonl --today $(TODAY)

# Re-resolve requirements.in into exact pins (needs the package index).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q -r requirements.in
	.lock-venv/bin/python -m pip freeze --all | grep -v -E '^(pip|setuptools|wheel)==' > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
