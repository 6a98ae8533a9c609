#!/usr/bin/env bash
# Create .venv with the package (editable) and its development tools.
# Needs only Python 3.11+; works where Debian's python3-venv (ensurepip) is missing, as long as
# pip itself is installed for that Python.
set -euo pipefail
python=${PYTHON:-python3}
venv=${VENV:-.venv}

if ! command -v "$python" >/dev/null; then
    echo "error: $python not found; install Python 3.11 or newer (or set PYTHON=...)" >&2
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: $("$python" --version 2>&1) is too old; giskard-worker needs Python 3.11+" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    if ! "$python" -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"
        # No ensurepip (Debian without python3-venv): a pip-less venv, filled by the system pip.
        if ! "$python" -m pip --version >/dev/null 2>&1; then
            echo "error: $python can make neither a venv with pip nor use a system pip;" \
                 "install python3-venv (Debian/Ubuntu: apt-get install python3-venv)" >&2
            exit 1
        fi
        "$python" -m venv --without-pip "$venv"
        "$python" -m pip --python "$venv/bin/python" install --quiet pip
    fi
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e '.[dev]'
touch "$venv/.installed"
