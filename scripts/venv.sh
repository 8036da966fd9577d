# Sourced by the other scripts: make sure .venv exists, made by Python 3.11 or newer.

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
