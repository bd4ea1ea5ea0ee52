# Sourced by the bench scripts: a docker-registry of their own on loopback.
# Needs $work (a temp dir). Sets $port now; start_registry (re)starts it with
# empty storage, stop_registry stops it (call it from the EXIT trap).
regpid=""
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
stop_registry() { [[ -n "$regpid" ]] && kill "$regpid" 2>/dev/null && wait "$regpid" 2>/dev/null || true; regpid=""; }
start_registry() {
  stop_registry
  rm -rf "$work/reg"; mkdir -p "$work/reg"
  cat >"$work/reg.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/reg}}
http: {addr: 127.0.0.1:$port}
YML
  docker-registry serve "$work/reg.yml" >"$work/reg.log" 2>&1 &
  regpid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && return; sleep 0.05; done
  echo "registry did not start" >&2; exit 1
}
