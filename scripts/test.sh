#!/usr/bin/env bash
# The README's test command: install everything the tests need, then run all of them.
# Works on a fresh Debian machine as root (or with sudo): Debian packages for the integration
# tests and benchmarks (nginx, aria2, axel, curl; tinyproxy-bin and microsocks for the proxy
# tests; chromium and chromium-driver for the daemon's page; tmux for the terminal tests, zsh for the completion test), the pip extras, then lint, types and pytest. tinyproxy-bin is the binary without the
# system service that the tinyproxy package would start: the tests run their own instances.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in nginx aria2 axel curl tinyproxy-bin microsocks chromium chromium-driver tmux zsh; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
python3 -m ruff check src tests bench scripts
python3 -m mypy
python3 -m pytest "$@"
