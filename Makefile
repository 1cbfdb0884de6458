# The two commands of the README. Both set everything up on first use (scripts/bootstrap.sh);
# later runs skip set-up in well under a second.
SHELL := /bin/bash
ENV := source ./env.sh
PYTEST_ARGS ?=

.PHONY: setup run test shell doctor clean help

help:
	@echo "make run     set up on first use, then run the main job"
	@echo "make test    set up on first use, then run the test suite (PYTEST_ARGS=... to pass options)"
	@echo "make shell   a shell inside the environment"
	@echo "make doctor  check the environment (m2vae doctor)"
	@echo "make clean   remove .venv, build/ and caches"

setup:
	@scripts/bootstrap.sh

run: setup
	@$(ENV) && m2vae demo

test: setup
	@$(ENV) && python -m pytest $(PYTEST_ARGS)

doctor: setup
	@$(ENV) && m2vae doctor

shell: setup
	@bash --rcfile <(echo '[ -f ~/.bashrc ] && . ~/.bashrc; source ./env.sh; PS1="(m2vae) $$PS1"') -i

clean:
	rm -rf .venv build .ros .pytest_cache
