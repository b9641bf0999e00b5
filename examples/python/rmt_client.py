#!/usr/bin/python3
"""Drive an rmt run from Python over gRPC: start it, watch it, read its metrics.

The stubs are generated at run time from the repository's proto/ (package rmt.v1) into a temporary
directory, so they always match the coordinator's contract. Needs Debian's python3-grpcio,
python3-grpc-tools and python3-protobuf; use /usr/bin/python3, which sees them.

    /usr/bin/python3 examples/python/rmt_client.py --config configs/rmt.yaml [--steps 10]
        [--out-dir runs/py] [--method rmt] [--coordinator 127.0.0.1:50054]
    /usr/bin/python3 examples/python/rmt_client.py --status     # GetRunStatus of the active run
    /usr/bin/python3 examples/python/rmt_client.py --workers    # the rollout workers it sees

Over TLS: --tls-ca ca.crt (and --tls-cert / --tls-key for a coordinator that wants a client
certificate, --tls-server-name when its certificate names another host than the address), the flags
of `rmt submit` and `rmt status`.

A run prints one status line per step on stderr and, when it ends, a JSON summary with the last
step's metrics on stdout (`| jq .metrics`). Exit status: 0 when the run is DONE, 1 when it ended
otherwise (stopped, failed), 2 on a gRPC error. Ctrl-C asks the coordinator to stop the run after
its step in flight (with a checkpoint; the same StartRun again resumes it).
"""
import argparse
import importlib
import json
import sys
import tempfile
from pathlib import Path

import grpc
from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"


def load_stubs(out_dir):
    """Compiles proto/rmt/v1/*.proto into out_dir and imports the coordinator's modules."""
    files = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "rmt" / "v1").glob("*.proto"))
    args = ["protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"]
    if protoc.main(args + files) != 0:
        sys.exit(f"protoc failed on {PROTO_DIR}")
    sys.path.insert(0, out_dir)
    return (importlib.import_module("rmt.v1.coordinator_pb2"),
            importlib.import_module("rmt.v1.coordinator_pb2_grpc"))


def state_name(pb, state):
    return pb.RunState.Name(state).replace("RUN_STATE_", "").lower()


def status_line(pb, s):
    # metrics is a map<string, double>: a dict-like view, empty until the first step is done.
    m = " ".join(f"{k}={s.metrics[k]:.4g}" if k in s.metrics else f"{k}=-"
                 for k in ("critic/score/mean", "response_length/mean"))
    line = (f"{s.run_id} step {s.step}/{s.total_steps} {state_name(pb, s.state)} B={s.budget} "
            f"{m} workers={s.workers}")
    return line + (f" error: {s.error}" if s.error else "")


def summary(pb, s):
    return {"run_id": s.run_id, "state": state_name(pb, s.state), "method": s.method,
            "step": s.step, "total_steps": s.total_steps, "out_dir": s.out_dir,
            "elapsed_s": s.elapsed_s, "error": s.error or None, "metrics": dict(s.metrics)}


def run(pb, stub, a):
    config = Path(a.config).read_text()  # YAML or JSON, sent as-is; the coordinator parses it
    start = stub.StartRun(pb.StartRunRequest(config=config, method=a.method, steps=a.steps,
                                             out_dir=a.out_dir, run_id=a.run_id), timeout=a.timeout)
    print(f"started {start.run_id} ({start.method}, {start.total_steps} steps)", file=sys.stderr)
    last = start
    try:
        for s in stub.WatchRun(pb.RunStatusRequest(run_id=start.run_id)):  # ends with the run
            print(status_line(pb, s), file=sys.stderr, flush=True)
            last = s
    except KeyboardInterrupt:
        print("stopping after the step in flight ...", file=sys.stderr)
        last = stub.StopRun(pb.StopRunRequest(run_id=start.run_id))
        print(status_line(pb, last), file=sys.stderr)
    print(json.dumps(summary(pb, last), indent=2))
    return 0 if last.state == pb.RUN_STATE_DONE else 1


def open_channel(a):
    # TLS when a CA or a client certificate is given (a certificate alone: the system's roots verify
    # the coordinator), as rmt submit / rmt status do.
    if not (a.tls_ca or a.tls_cert):
        return grpc.insecure_channel(a.coordinator)
    read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
    creds = grpc.ssl_channel_credentials(read(a.tls_ca), read(a.tls_key), read(a.tls_cert))
    options = [("grpc.ssl_target_name_override", a.tls_server_name)] if a.tls_server_name else []
    return grpc.secure_channel(a.coordinator, creds, options=options)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--coordinator", default="127.0.0.1:50054", help="host:port of the coordinator")
    p.add_argument("--config", help="run config (YAML or JSON) to start a run with")
    p.add_argument("--steps", type=int, default=0, help="override train.steps")
    p.add_argument("--out-dir", default="", help="override run.out_dir (a path the services can write)")
    p.add_argument("--method", default="", help="override method: ntp, rpt, rmt, rmt-no-dtb, ...")
    p.add_argument("--run-id", default="", help="name of the run (default: generated / the active one)")
    p.add_argument("--status", action="store_true", help="only print the run's status")
    p.add_argument("--workers", action="store_true", help="only list the rollout workers")
    p.add_argument("--timeout", type=float, default=30, help="seconds to connect and for unary calls")
    p.add_argument("--tls-ca", help="PEM CA to verify the coordinator: call it over TLS")
    p.add_argument("--tls-cert", help="PEM client certificate (mutual TLS), with --tls-key")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--tls-server-name", help="name to verify in the coordinator's certificate")
    a = p.parse_args()
    if not (a.config or a.status or a.workers):
        p.error("one of --config, --status, --workers is required")
    if (a.tls_cert is None) != (a.tls_key is None):
        p.error("--tls-cert and --tls-key go together")
    if a.tls_server_name and not (a.tls_ca or a.tls_cert):
        p.error("--tls-server-name needs TLS (--tls-ca or --tls-cert)")

    with tempfile.TemporaryDirectory(prefix="rmt-stubs-") as gen:
        pb, pb_grpc = load_stubs(gen)
        with open_channel(a) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=a.timeout)
            except grpc.FutureTimeoutError:
                print(f"UNAVAILABLE: no coordinator at {a.coordinator} after {a.timeout:g} s",
                      file=sys.stderr)
                return 2
            stub = pb_grpc.CoordinatorServiceStub(channel)
            try:
                if a.status:
                    print(status_line(pb, stub.GetRunStatus(pb.RunStatusRequest(run_id=a.run_id),
                                                            timeout=a.timeout)))
                    return 0
                if a.workers:
                    for w in stub.ListWorkers(pb.ListWorkersRequest(), timeout=a.timeout).workers:
                        print(f"{w.worker_id} {w.address} v{w.weight_version} "
                              f"{'busy' if w.busy else 'idle'} seen {w.last_seen_s:.1f} s ago")
                    return 0
                return run(pb, stub, a)
            except grpc.RpcError as e:
                # INVALID_ARGUMENT names the offending field in the trailer rmt-field (docs/rpc.md).
                field = dict(e.trailing_metadata() or ()).get("rmt-field")
                print(f"{e.code().name}: {e.details()}" + (f" (field {field})" if field else ""),
                      file=sys.stderr)
                return 2


if __name__ == "__main__":
    sys.exit(main())
