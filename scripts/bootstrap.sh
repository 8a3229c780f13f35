#!/usr/bin/env bash
# Install everything the project needs on a fresh machine (Python 3.11 + PostgreSQL + apt/PyPI).
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bootstrap] %s\n' "$*"; }

missing_apt=()
[ -x /usr/sbin/sshd ] || missing_apt+=(openssh-server)
command -v ssh-keygen >/dev/null || missing_apt+=(openssh-client)
command -v psql >/dev/null || missing_apt+=(postgresql-client)
# Headless browser for the UI test (dca_pipeline_tests/frontdoor): Debian's own build, never a download.
command -v chromium >/dev/null || missing_apt+=(chromium)
if [ ${#missing_apt[@]} -gt 0 ]; then
  say "apt-get install ${missing_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing_apt[@]}" >/dev/null
fi

# uv from PATH, or the copy pip installed (its script dir may not be on PATH, e.g. --user).
if command -v uv >/dev/null; then
  uv() { command uv "$@"; }
else
  if ! python3 -m uv --version >/dev/null 2>&1; then
    say "pip install uv"
    python3 -m pip install -q uv || python3 -m pip install -q --user --break-system-packages uv
  fi
  uv() { python3 -m uv "$@"; }
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  uv venv -q -p python3.11 .venv
fi
# Re-resolve only when the dependencies changed (the editable install itself follows the tree).
stamp=.venv/.dca-pyproject.sha256
if ! sha256sum --status -c "$stamp" 2>/dev/null || [ ! -x .venv/bin/dca-pipeline ]; then
  say "installing dca-pipeline[dev] into .venv"
  uv pip install -q -p .venv/bin/python -e '.[dev]'
  sha256sum pyproject.toml >"$stamp"
fi

# LNbits pins pydantic 1 and Dagster needs 2: it lives in its own venv, reached over HTTP only.
# (Checked without importing lnbits, which alone takes seconds.)
lnbits_ok="import importlib.metadata as m, importlib.util as u
assert m.version('lnbits') == '1.6.2' and u.find_spec('lnbits') is not None"
if ! .lnbits-venv/bin/python -c "$lnbits_ok" 2>/dev/null; then
  say "building .lnbits-venv (LNbits 1.6.2, FakeWallet for tests and the demo)"
  rm -rf .lnbits-venv
  uv venv -q -p python3.11 .lnbits-venv
  # bitstring 5 breaks bolt11, which LNbits pins.
  uv pip install -q -p .lnbits-venv/bin/python 'lnbits==1.6.2' 'bitstring<5'
fi

# A real Nostr relay for the alert tests, kept out of the project venv like LNbits.
if [ ! -x .nostr-relay-venv/bin/nostr-relay ]; then
  say "building .nostr-relay-venv (nostr-relay 1.14, alert tests only)"
  rm -rf .nostr-relay-venv
  uv venv -q -p python3.11 .nostr-relay-venv
  uv pip install -q -p .nostr-relay-venv/bin/python 'nostr-relay==1.14'
fi
say "ready"
