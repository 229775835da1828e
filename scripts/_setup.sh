# Sourced by the other scripts: make .venv with fanmap and what the calling script needs.
# Every script installs the same full set of extras, so that the README's commands work
# in any order: the stamp records the pyproject.toml and the extras it was made from.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
EXTRAS=dev,docs,progress,numpy,dask
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.fanmap-installed
want="$( (cat pyproject.toml; echo "$EXTRAS") | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$EXTRAS]"
    echo "$want" > "$stamp"
fi
