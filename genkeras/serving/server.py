"""`genkeras serve`: a local server with TF Serving's REST and gRPC APIs and its flags.

    genkeras serve --model_config_file serving/models.config [--rest_api_port 8501] [--port 8500]

Flags keep TF Serving's names (`--model_config_file`, `--model_config_file_poll_wait_seconds`,
`--file_system_poll_wait_seconds`, `--enable_batching`, `--batching_parameters_file`,
`--monitoring_config_file`, `--rest_api_num_threads`, `--model_name`/`--model_base_path`).
Differences, on purpose: it binds 127.0.0.1 unless `--host` says otherwise; it watches the
config file every 2 s by default; `--path_map CONTAINER=HOST` maps the container paths of
models.config (default `/models=<config folder>/../savedmodels`, docker-compose's mount);
request bodies and gRPC messages are limited to `--max_request_bytes` (64 MiB). The REST port
also serves the latent explorer web page at `/` (genkeras/serving/static/, see README).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

log = logging.getLogger("genkeras.serving")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag(parser, name, help=None):  # noqa: A002
    """A boolean flag TF Serving's way: `--name`, `--name=true` or `--name=false`."""
    parser.add_argument(name, nargs="?", const=True, default=False, type=_bool, help=help)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genkeras serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0: no gRPC)")
    p.add_argument("--rest_api_port", type=int, default=8501, help="REST port (0: no REST)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument(
        "--model_config_file", help="ModelServerConfig text proto (serving/models.config)"
    )
    p.add_argument(
        "--model_name", default="default", help="single model name, with --model_base_path"
    )
    p.add_argument("--model_base_path", help="single model base path (instead of a config file)")
    p.add_argument(
        "--path_map",
        action="append",
        default=[],
        metavar="CONTAINER=HOST",
        help="map base paths of the config (default /models=<config dir>/../savedmodels)",
    )
    p.add_argument("--model_config_file_poll_wait_seconds", type=float, default=2.0)
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    _flag(p, "--enable_batching")
    p.add_argument("--batching_parameters_file")
    _flag(
        p,
        "--enable_per_model_batching_parameters",
        help="batch a version only with its own batching_params.pbtxt (as TF Serving)",
    )
    p.add_argument("--monitoring_config_file")
    p.add_argument("--rest_api_num_threads", type=int, default=32)
    p.add_argument("--grpc_max_threads", type=int, default=32)
    p.add_argument("--max_request_bytes", type=int, default=64 * 1024 * 1024)
    _flag(
        p,
        "--allow_version_labels_for_unavailable_models",
        help="accepted for compatibility; labels may always point at any version here",
    )
    _flag(p, "--no_warmup", help="skip assets.extra warm-up requests")
    _flag(p, "--verbose")
    return p


def _server_config(args):
    from tensorflow_serving.config import model_server_config_pb2

    from genkeras.serving import config as config_lib

    if args.model_config_file:
        return config_lib.read_model_server_config(args.model_config_file)
    if not args.model_base_path:
        raise SystemExit("genkeras serve: give --model_config_file or --model_base_path")
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name, model.base_path, model.model_platform = (
        args.model_name,
        args.model_base_path,
        "tensorflow",
    )
    return config


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from genkeras.serving import config as config_lib
    from genkeras.serving.batching import Batcher
    from genkeras.serving.grpc_service import make_grpc_server
    from genkeras.serving.manager import ModelManager
    from genkeras.serving.rest import RestApi, RestServer

    server_config = _server_config(args)
    path_maps = config_lib.parse_path_maps(args.path_map, args.model_config_file)
    batcher = None
    if args.enable_batching:
        params = (
            config_lib.read_batching_parameters(args.batching_parameters_file)
            if args.batching_parameters_file
            else None
        )
        batcher = Batcher(params)
    prometheus_path = None
    if args.monitoring_config_file:
        monitoring = config_lib.read_monitoring_config(args.monitoring_config_file)
        if monitoring.prometheus_config.enable:
            prometheus_path = monitoring.prometheus_config.path or "/monitoring/prometheus/metrics"

    manager = ModelManager(
        server_config,
        args.model_config_file,
        path_maps,
        batcher,
        warmup=not args.no_warmup,
        per_model_batching=args.enable_per_model_batching_parameters,
    )
    manager.start(args.file_system_poll_wait_seconds, args.model_config_file_poll_wait_seconds)
    for name in manager.model_names():
        log.info("Model %s: base path %s", name, manager.base_path(name))

    stop = threading.Event()
    grpc_server = rest_server = None
    if args.port:
        grpc_server, port = make_grpc_server(
            manager, f"{args.host}:{args.port}", args.max_request_bytes, args.grpc_max_threads
        )
        grpc_server.start()
        log.info("Running gRPC ModelServer at %s:%d ...", args.host, port)
    if args.rest_api_port:
        api = RestApi(manager)
        rest_server = RestServer(
            (args.host, args.rest_api_port),
            api,
            args.max_request_bytes,
            args.rest_api_num_threads,
            prometheus_path,
        )
        threading.Thread(target=rest_server.serve_forever, daemon=True).start()
        log.info("Exporting HTTP/REST API at:%s:%d ...", args.host, rest_server.server_address[1])

    def shutdown(*_):
        stop.set()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    print("genkeras serve: ready", flush=True)
    stop.wait()
    manager.stop()
    if rest_server is not None:
        rest_server.shutdown()
    if grpc_server is not None:
        grpc_server.stop(grace=2).wait()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
