#!/usr/bin/env bash
# The test command: venv + install, lint (ruff), the real local SLURM (as root, when none answers),
# then pytest.
#
#   bash scripts/test.sh [pytest args]
#
# As root it also installs the Debian packages the tests read real data from. A SLURM it brought up
# is stopped again on exit; one that was already running is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
VENV=${SYNMED_VENV:-.venv}

# Lint before anything slow: a tree that ruff rejects fails the command in seconds, not after pytest.
lint_failed=()
"$VENV/bin/ruff" check . || lint_failed+=("ruff check")
"$VENV/bin/ruff" format --check . || lint_failed+=("ruff format --check")
if [ ${#lint_failed[@]} -gt 0 ]; then
    echo "test: lint failed (${lint_failed[*]}): run \`ruff check --fix . && ruff format .\`, review, commit" >&2
    exit 1
fi

started_slurm=0
if [ "$(id -u)" = 0 ]; then
    # real data for the IDX tests; ip for the network-namespace SLURM (scripts/netns-slurm.sh)
    missing=()
    for pkg in dataset-fashion-mnist iproute2; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "test: installing Debian's ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! timeout 10 sinfo -h >/dev/null 2>&1; then
        echo "test: no SLURM controller answers; bringing up the local one (scripts/local-slurm.sh)"
        bash scripts/local-slurm.sh up
        started_slurm=1
    fi
else
    echo "test: not root: SLURM and apt-based data are used only if already there (else those tests skip)"
fi
cleanup() { if [ "$started_slurm" = 1 ]; then bash scripts/local-slurm.sh down || true; fi; }
trap cleanup EXIT

set +e
"$VENV/bin/python" -m pytest "$@"
status=$?
set -e
[ "$status" = 5 ] && { echo "test: pytest collected no tests" >&2; status=1; }
exit "$status"
