#!/usr/bin/env bash
# Refresh requirements/ci.txt, the fully pinned versions that CI and the README's test command install
# (as pip constraints), to the newest releases within pyproject.toml's ranges. Needs uv (pip install uv).
# Usage: requirements/lock.sh            (extra arguments go to `uv pip compile`)
set -euo pipefail
cd "$(dirname "$0")/.."
uv pip compile pyproject.toml requirements/ci.in --extra test --upgrade \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --custom-compile-command "requirements/lock.sh" -o requirements/ci.txt "$@"
