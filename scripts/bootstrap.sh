#!/usr/bin/env bash
# Creates .venv and installs Syncgate with its test extras; re-installs only when
# pyproject.toml changed. Sourced by scripts/test and scripts/demo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.syncgate-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating virtualenv in .venv" >&2
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing syncgate and its dependencies (first run only)" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test]" >&2
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
