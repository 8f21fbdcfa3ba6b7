#!/usr/bin/env bash
# Installs everything the demo and the tests need, idempotently:
# Debian packages (Java, Maven, Prometheus, Alertmanager, Chromium + chromedriver),
# the Python package with its test extras, and the Apache Kafka jars (through Maven).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 \
  || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo";
  else
    echo "install.sh: please install these Debian packages first: ${missing[*]}" >&2
    exit 1
  fi
  echo "install.sh: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
echo "install.sh: installing the minibroker Python package (with test extras)"
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test]"
echo "install.sh: resolving Apache Kafka jars with Maven (cached after the first time)"
"$PYTHON" -m broker kafka fetch
