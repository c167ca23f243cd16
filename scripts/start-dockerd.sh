#!/usr/bin/env bash
# Starts a local Docker engine for the container tests when none answers. Idempotent; needs
# root. Installs Debian's docker.io when dockerd is missing. The engine gets no bridge network
# and no iptables rules: test containers run with network_mode "none" and talk to berth only
# through their attached stdio.
set -euo pipefail
log=${DOCKERD_LOG:-/tmp/berth-dockerd.log}

if docker version >/dev/null 2>&1; then
    echo "start-dockerd: an engine answers already"
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "start-dockerd: installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
fi
# A pid file left by an engine that is gone would stop the new one from starting.
if [[ -f /var/run/docker.pid ]] && ! pgrep -x dockerd >/dev/null; then
    rm -f /var/run/docker.pid
fi
echo "start-dockerd: starting dockerd (log: $log)"
nohup dockerd --bridge=none --iptables=false --ip-masq=false >"$log" 2>&1 &
for _ in $(seq 1 240); do
    if docker version >/dev/null 2>&1; then
        echo "start-dockerd: engine up: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"
        exit 0
    fi
    sleep 0.5
done
echo "start-dockerd: the engine did not answer within 120 s; last log lines:" >&2
tail -n 20 "$log" >&2
exit 1
