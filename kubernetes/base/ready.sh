#!/bin/bash
# Ready when every model of a TF Serving config can answer: for each `name:` in the model config file, GET
# /v1/models/NAME must answer 200 with at least one version AVAILABLE, none still START or LOADING, and no version
# whose load failed (an error_code other than OK). The status endpoint answers 200 while a version is LOADING
# (get_model_status_impl.cc reports every state with an OK status), so the HTTP code alone proves nothing.
# A version unloaded on purpose (END, error_code OK) is fine.
#
#   ready.sh CONFIG_FILE [REST_PORT]      exit 0: ready; 1: not ready (the reason on stderr)
#
# Used by compose.yaml's health check and by the Kubernetes startup and readiness probes. TF Serving's CPU image has
# neither curl nor wget, so HTTP goes through bash's /dev/tcp (both images have bash, grep and sed).
config=${1:?usage: ready.sh CONFIG_FILE [REST_PORT]}
port=${2:-8501}
models=$(sed -n "s/^[[:space:]]*name:[[:space:]]*[\"']\([^\"']*\)[\"'].*/\1/p" "$config") || exit 1
[ -n "$models" ] || { echo "no model names in $config" >&2; exit 1; }
for model in $models; do
  if ! exec 3<>"/dev/tcp/127.0.0.1/$port"; then
    echo "REST port $port is closed" >&2; exit 1
  fi
  printf 'GET /v1/models/%s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$model" >&3
  answer=$(cat <&3)
  exec 3<&-
  status=$(printf '%s' "$answer" | sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p')
  states=$(printf '%s' "$answer" | grep -o '"state"[[:space:]]*:[[:space:]]*"[A-Z]*"' | sed 's/.*"\([A-Z]*\)"$/\1/')
  codes=$(printf '%s' "$answer" | grep -o '"error_code"[[:space:]]*:[[:space:]]*"[A-Z_]*"' | sed 's/.*"\([A-Z_]*\)"$/\1/')
  if [ "$status" != 200 ]; then
    echo "$model: HTTP ${status:-no answer}" >&2; exit 1
  fi
  if ! grep -qx AVAILABLE <<<"$states"; then
    echo "$model: no version AVAILABLE (states:" $states")" >&2; exit 1
  fi
  if grep -qxE 'START|LOADING' <<<"$states"; then
    echo "$model: a version is still loading (states:" $states")" >&2; exit 1
  fi
  if [ -n "$codes" ] && grep -qvx OK <<<"$codes"; then
    echo "$model: a version failed to load (error codes:" $codes")" >&2; exit 1
  fi
done
