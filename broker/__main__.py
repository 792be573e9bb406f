"""Run the official Apache Kafka broker on 127.0.0.1, in KRaft mode, in the background.

    $ python -m broker start
    Apache Kafka 4.4.0 is ready at 127.0.0.1:9092 (started in 3.4 s; log: .kafka/node-1/server.log)
    $ python -m broker status
    running: pid 41233, bootstrap 127.0.0.1:9092, Apache Kafka 4.4.0, log .kafka/node-1/server.log
    $ python -m broker stop
    stopped Kafka (pid 41233)
    $ python -m broker start --nodes 3            # a cluster: ports 9092, 9094, 9096
    $ python -m broker kill --node 2              # SIGKILL one node, as a power cut would
    killed Kafka node 2 (pid 41301) with SIGKILL
    the other nodes count node 2 as gone (after 8.6 s)
    $ export KAFKA_SASL_USERNAME=tutorial-user KAFKA_SASL_PASSWORD=change-me-please
    $ python -m broker start --sasl --tls --data-dir .kafka-tls --port 9292
    Apache Kafka 4.4.0 is ready (started in 5.2 s; log: .kafka-tls/node-1/server.log)
      PLAINTEXT 127.0.0.1:9292
      SASL_PLAINTEXT (SCRAM-SHA-512) 127.0.0.1:9294
      SASL_SSL (SCRAM-SHA-512, PLAIN) 127.0.0.1:9295, certificate for 127.0.0.1 and localhost; trust .kafka-tls/tls/ca.pem
    $ python -m broker start --port 9092   # while something else holds 9092
    error: port 9092 on 127.0.0.1 is already in use by another program (another Kafka?): ...

Exit codes: 0 ok, 1 Kafka could not be started or stopped, 2 usage error,
3 (status only) not running.

KAFKA_DATA_DIR and KAFKA_PORT in the environment change the defaults of --data-dir and
--port (the README's test runs the cluster section on a port and data dir of its own so).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from broker import cluster
from cli import EXIT_ERROR, EXIT_OK, EXIT_ON_SIGNAL, EXIT_USAGE

EXIT_NOT_RUNNING = 3  # status only; the others are every script's (cli.py)
MAX_NODES = 5  # each node is a JVM with its own heap: more will not fit a laptop


_relative = cluster._shown


def _default_port(environ=os.environ) -> int:
    value = environ.get("KAFKA_PORT", "")
    if not value:
        return cluster.DEFAULT_PORT
    if not value.isdigit():
        print(f"error: KAFKA_PORT={value!r} is not a port number", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    return int(value)


def describe(running: cluster.Cluster) -> str:
    pids = ", ".join(str(node.pid) for node in running.nodes)
    logs = ", ".join(_relative(node.log_file) for node in running.nodes)
    word = "pid" if len(running.nodes) == 1 else "pids"
    sasl = f", SASL (SCRAM-SHA-512) {running.sasl_bootstrap}" if running.sasl_bootstrap else ""
    if running.tls_bootstrap:  # one line per listener: which protocol where, which CA to trust
        return (f"running: {word} {pids}, Apache Kafka {running.kafka_version}, log {logs}\n"
                + _listener_lines(running))
    return (f"running: {word} {pids}, bootstrap {running.bootstrap}{sasl}, "
            f"Apache Kafka {running.kafka_version}, log {logs}")


def _listener_lines(running: cluster.Cluster) -> str:
    return "\n".join(f"  {line}" for line in running.listeners())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m broker",
        description="Start, stop or inspect a local Apache Kafka (KRaft mode, 127.0.0.1 only).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start Kafka in the background; return once it is ready")
    stop = commands.add_parser("stop", help="stop Kafka (SIGTERM) and wait until it has exited")
    status = commands.add_parser("status", help="tell whether Kafka runs, and where")
    kill = commands.add_parser("kill", help="SIGKILL one node of this cluster (a power cut), then "
                                            "wait until the other nodes count it as gone")
    for command in (start, stop, status, kill):
        command.add_argument("--data-dir", type=Path,
                             default=Path(os.environ.get("KAFKA_DATA_DIR") or cluster.DEFAULT_DATA_DIR),
                             help="where the data, the config and the logs live "
                                  "(default $KAFKA_DATA_DIR, else .kafka)")
    start.add_argument("--port", type=int, default=_default_port(),
                       help="client port on 127.0.0.1 (default $KAFKA_PORT, else 9092; the "
                            "controller takes the next)")
    start.add_argument("--nodes", type=int, default=None,
                       help="how many Kafka nodes (each broker + controller; default: as many as "
                            "the data dir holds, 1 for a new one). Node i listens on PORT+2i, "
                            "its controller on PORT+2i+1")
    start.add_argument("--heap", default=cluster.DEFAULT_HEAP,
                       help="JVM heap per node, as in -Xmx (default 512m)")
    start.add_argument("--timeout", type=float, default=cluster.START_TIMEOUT_S,
                       help="seconds to wait for Kafka to answer (default 90)")
    start.add_argument("--sasl", action="store_true",
                       help="also listen with SASL_PLAINTEXT + SCRAM-SHA-512 for the user "
                            "KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD (from the environment)")
    start.add_argument("--tls", action="store_true",
                       help="with --sasl: also listen with SASL_SSL (PLAIN and SCRAM-SHA-512, "
                            "the same user), with a certificate for 127.0.0.1 and localhost from a "
                            "CA made for the data dir (DATA_DIR/tls/ca.pem: the file to trust)")
    start.add_argument("--reuse", action="store_true",
                       help="if another Kafka (Docker, a download) already answers on --port, "
                            "use it instead of failing (what make demo does)")
    stop.add_argument("--wipe", action="store_true", help="also delete the data dir (all topics)")
    kill.add_argument("--node", type=int, required=True, help="which node (1, 2, ...)")
    kill.add_argument("--no-wait", action="store_true",
                      help="return at once, before the other nodes have noticed")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "start":
            return _start(args)
        if args.command == "stop":
            return _stop(args)
        if args.command == "kill":
            return _kill(args)
        running = cluster.status(args.data_dir)
        print(describe(running) if running else f"not running (data dir {args.data_dir})")
        return EXIT_OK if running else EXIT_NOT_RUNNING
    except cluster.BrokerError as error:
        print(f"error: {error}", file=sys.stderr)
        if error.log_tail:
            print(f"--- last lines of the broker log ---\n{error.log_tail}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ON_SIGNAL[signal.SIGINT]


def _start(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65535 - 2 * (args.nodes or MAX_NODES):
        print(f"error: --port {args.port} is not a port number", file=sys.stderr)
        return EXIT_USAGE
    if args.nodes is not None and not 1 <= args.nodes <= MAX_NODES:
        print(f"error: --nodes must be 1 to {MAX_NODES}", file=sys.stderr)
        return EXIT_USAGE
    already = cluster.status(args.data_dir)
    if already is not None and len(already.nodes) == cluster.nodes_in(args.data_dir):
        # Refuses (BrokerError) a start that asks for another cluster than the running one.
        cluster.start(args.data_dir, nodes=args.nodes, sasl=args.sasl or args.tls, tls_listener=args.tls)
        print(f"already {describe(already)}")
        return EXIT_OK
    if already is None and args.reuse and cluster.kafka_answers(args.port):
        print(f"using the Kafka that already answers at {cluster.HOST}:{args.port} "
              f"(started elsewhere, not from {args.data_dir})")
        return EXIT_OK
    began = time.monotonic()
    started = cluster.start(args.data_dir, port=args.port, nodes=args.nodes, heap=args.heap,
                            timeout_s=args.timeout, sasl=args.sasl or args.tls, tls_listener=args.tls)
    logs = ", ".join(_relative(node.log_file) for node in started.nodes)
    took = time.monotonic() - began
    if started.tls_bootstrap:
        print(f"Apache Kafka {started.kafka_version} is ready (started in {took:.1f} s; "
              f"log: {logs})\n{_listener_lines(started)}")
        return EXIT_OK
    sasl = f" and {started.sasl_bootstrap} (SASL)" if started.sasl_bootstrap else ""
    print(f"Apache Kafka {started.kafka_version} is ready at {started.bootstrap}{sasl} "
          f"(started in {time.monotonic() - began:.1f} s; log: {logs})")
    return EXIT_OK


def _stop(args: argparse.Namespace) -> int:
    running = cluster.status(args.data_dir)
    cluster.stop(args.data_dir, wipe=args.wipe)
    wiped = f" and deleted {args.data_dir}" if args.wipe else ""
    if running:
        pids = ", ".join(str(node.pid) for node in running.nodes)
        print(f"stopped Kafka (pid {pids}){wiped}")
    else:
        print(f"Kafka was not running{wiped}")
    return EXIT_OK


def _kill(args: argparse.Namespace) -> int:
    node = cluster.kill_node(args.data_dir, args.node)
    print(f"killed Kafka node {node.node_id} (pid {node.pid}) with SIGKILL", flush=True)
    running = cluster.status(args.data_dir)
    if args.no_wait or running is None:
        return EXIT_OK
    took = cluster.wait_until_gone(args.data_dir, node.node_id)
    others = ", ".join(str(n.node_id) for n in running.nodes)
    print(f"nodes {others} count node {node.node_id} as gone (after {took:.1f} s)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
