#!/usr/bin/env bash
# Installs everything the tests need (Mosquitto from Debian, the package into .venv) and
# runs the whole suite, slow end-to-end tests included, on 2 pytest-xdist workers (CI has 2 cores; most
# end-to-end tests wait on real time, not the CPU). Extra arguments go to pytest (`-n 0`: one process).
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)  # the tests make their own CA (TLS broker, ward config)
# the nurse-station page is tested in Debian's headless Chromium (selenium drives it; nothing downloads a browser)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
export LSLAPICFG="$PWD/config/lsl_loopback.cfg"
exec .venv/bin/python -m pytest -n 2 "$@"
