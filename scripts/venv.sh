# Sourced by the other scripts: make sure .venv exists, made by Python 3.11 or newer,
# and install what exportd's own runs use from the lock.

ensure_venv() {
    if [[ -x .venv/bin/python ]]; then
        return
    fi
    local python
    for python in python3 python3.13 python3.12 python3.11; do
        if command -v "$python" >/dev/null &&
            "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "Creating .venv with $("$python" --version)"
            "$python" -m venv .venv
            return
        fi
    done
    echo "exportd needs Python 3.11 or newer as python3, python3.11, python3.12 or python3.13" >&2
    exit 1
}

# Every dependency at the version and hash requirements.lock pins (exportd's, its
# tests' and the project's tools: tox, ruff, mypy, uv), then exportd itself, editable.
install_locked() {
    local pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
    "${pip[@]}" --require-hashes --requirement requirements.lock
    "${pip[@]}" --no-deps --editable .
}
