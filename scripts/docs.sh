#!/usr/bin/env bash
# Build the manual (MkDocs, mkdocs.yml) with --strict: any warning (a broken link, a missing page,
# a docstring mkdocstrings cannot read) fails the build.
# Usage: bash scripts/docs.sh [SITE_DIR]        (default site/)
# Python: the active virtual environment, else .venv, else python3. The docs tools (the `docs` extra
# of pyproject.toml) are pip-installed into it when missing; torch and the package's other
# dependencies are not needed (the hooks read the source and import only the argument parser).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  PY="$VIRTUAL_ENV/bin/python"
elif [[ -x .venv/bin/python ]]; then
  PY=.venv/bin/python
else
  PY=${PYTHON:-python3}
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 NO_MKDOCS_2_WARNING=1
if ! "$PY" -c "import mkdocs, material, mkdocstrings, mkdocstrings_handlers.python" 2>/dev/null; then
  mapfile -t DOCS_REQS < <("$PY" -c "import tomllib
print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['docs']))")
  "$PY" -m pip install -q "${DOCS_REQS[@]}"
fi
"$PY" -m mkdocs build --strict --site-dir "${1:-site}"
