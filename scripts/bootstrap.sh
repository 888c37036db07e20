#!/usr/bin/env bash
# Creates .venv and installs Syncgate with its test extras; re-installs only when
# pyproject.toml changed (a stamp file in the venv records which one was installed).
#
#   source scripts/bootstrap.sh    # install if needed, then put .venv/bin on PATH
#   bash scripts/bootstrap.sh      # install if needed, change nothing else
#
# Safe to source from an interactive shell: the install runs in a child bash with its
# own `set -euo pipefail`, so the sourcing shell's options (errexit, nounset, pipefail)
# stay as they were, and a failure makes `source` return non-zero instead of closing the
# terminal. Sourced from a script with `set -e` (scripts/test, scripts/demo, .ci/run),
# that non-zero status still stops the script. Its only lasting effect is PATH.
#
# SYNCGATE_VENV names another virtualenv directory to use (default: .venv in the repo).

if (return 0 2>/dev/null); then
  # Sourced: install in a child process, then change PATH here and nothing else.
  "${BASH:-bash}" "${BASH_SOURCE[0]}" || return
  _syncgate_bin="${SYNCGATE_VENV:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv}/bin"
  case ":$PATH:" in
    *":$_syncgate_bin:"*) ;;
    *) export PATH="$_syncgate_bin:$PATH" ;;
  esac
  unset _syncgate_bin
  return 0
fi

set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SYNCGATE_VENV:-$root/.venv}"
stamp="$venv/.syncgate-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating virtualenv in $venv" >&2
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing syncgate and its dependencies (first run only)" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test]" >&2
  echo "$want" > "$stamp"
fi
