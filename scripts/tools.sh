#!/usr/bin/env bash
# Installs the programs the tests drive from outside Go, when one is missing:
# curl (the admin page's endpoint tests) and chromium (the admin page
# rendered headless, observability/admin). Under CI=true those tests fail
# without them; locally they skip. Debian or Ubuntu: apt-get, as root or
# through sudo.
set -euo pipefail

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
if [[ ${#missing[@]} -eq 0 ]]; then
	echo "curl and chromium present"
	exit 0
fi
echo "installing: ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null 2>&1 || { echo "scripts/tools.sh: ${missing[*]} missing, and not root to install them (apt-get install -y curl chromium)" >&2; exit 1; }
	sudo=(sudo)
fi
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y curl chromium
