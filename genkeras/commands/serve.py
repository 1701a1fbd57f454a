"""`genkeras serve`: a local server with TF Serving's REST and gRPC APIs and its flags.

    genkeras serve --model_config_file serving/models.config [--rest_api_port 8501] [--port 8500]

Flags keep TF Serving's names (`--model_config_file`, `--model_config_file_poll_wait_seconds`,
`--file_system_poll_wait_seconds`, `--enable_batching`, `--batching_parameters_file`,
`--monitoring_config_file`, `--rest_api_num_threads`, `--rest_api_timeout_in_ms`,
`--grpc_max_threads`, `--model_name`/`--model_base_path`). Differences, on purpose: it binds
127.0.0.1 unless `--host` says otherwise; it watches the config file every 2 s by default;
`--path_map CONTAINER=HOST` maps the container paths of models.config (default
`/models=<config folder>/../savedmodels`, docker-compose's mount); request bodies and gRPC
messages are limited to `--max_request_bytes` (64 MiB). The rest of TF Serving's flags
(`--grpc_socket_path`, `--grpc_channel_arguments`, `--version`, ...) are in `serve_flags.py`:
implemented, accepted, or refused with a reason. Flags of its own bound the work a
request may cause (`--max_tensor_elements`, `--max_queued_requests`,
`--max_inflight_request_bytes`, `--max_execution_batch_size`, `--http_read_timeout_seconds`,
`--http_max_connections`). The REST port also serves the latent explorer web page at `/`
(genkeras/serving/explorer/, see README). The server itself is
`genkeras.serving.server.run_server`.

Exit status 2 with one line on stderr for a flag that cannot work (a port out of range or
taken, a TF Serving flag refused, a bad `--grpc_channel_arguments`) or a config file that
cannot be read or parsed (`Error parsing text-format tensorflow.serving.ModelServerConfig:
FILE:LINE:COLUMN: ...`), before any model loads. `--version` prints the versions, exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from genkeras.commands import serve_flags
from genkeras.commands.serve_flags import add_bool as _flag
from genkeras.serving.server import ServerOptions, StartupError, run_server


def build_parser() -> argparse.ArgumentParser:
    """The flags of `genkeras serve`, with `ServerOptions`' defaults."""
    d = ServerOptions()
    p = argparse.ArgumentParser(prog="genkeras serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=d.port, help="gRPC port (0: no gRPC)")
    p.add_argument(
        "--rest_api_port", type=int, default=d.rest_api_port, help="REST port (0: no REST)"
    )
    p.add_argument("--host", default=d.host, help="address to bind (default loopback only)")
    p.add_argument(
        "--model_config_file", help="ModelServerConfig text proto (serving/models.config)"
    )
    p.add_argument(
        "--model_name", default=d.model_name, help="single model name, with --model_base_path"
    )
    p.add_argument("--model_base_path", help="single model base path (instead of a config file)")
    p.add_argument(
        "--path_map",
        action="append",
        default=d.path_map,
        metavar="CONTAINER=HOST",
        help="map base paths of the config (default /models=<config dir>/../savedmodels)",
    )
    p.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=d.model_config_file_poll_wait_seconds,
    )
    p.add_argument(
        "--file_system_poll_wait_seconds", type=float, default=d.file_system_poll_wait_seconds
    )
    _flag(p, "--enable_batching")
    p.add_argument("--batching_parameters_file")
    _flag(
        p,
        "--enable_per_model_batching_parameters",
        help="batch a version only with its own batching_params.pbtxt (as TF Serving)",
    )
    p.add_argument("--monitoring_config_file")
    p.add_argument("--rest_api_num_threads", type=int, default=d.rest_api_num_threads)
    # The limits: name, type, help (defaults from ServerOptions).
    limits = (
        (
            "rest_api_timeout_in_ms",
            int,
            "a REST request unanswered this long answers 504 and its work stops (0: never)",
        ),
        ("grpc_max_threads", int, "gRPC calls running at once (default 4 per CPU, as TF Serving)"),
        ("max_request_bytes", int, None),
        (
            "max_tensor_elements",
            int,
            "most values in one input or answer tensor (default max_request_bytes / 4)",
        ),
        (
            "max_queued_requests",
            int,
            "requests of each API that may wait; more get 503 / RESOURCE_EXHAUSTED",
        ),
        (
            "max_inflight_request_bytes",
            int,
            "bodies over 256 KiB run while their total fits (default max_request_bytes)",
        ),
        (
            "max_execution_batch_size",
            int,
            "rows run at a time for a request with a batch dimension (0: all)",
        ),
        (
            "http_read_timeout_seconds",
            float,
            "seconds for a REST request's headers, then its body; idle connections close",
        ),
        ("http_max_connections", int, "REST connections served at once; more are answered 503"),
    )
    for name, kind, help_text in limits:
        p.add_argument(f"--{name}", type=kind, default=getattr(d, name), help=help_text)
    _flag(
        p,
        "--allow_version_labels_for_unavailable_models",
        help="accepted for compatibility; labels may always point at any version here",
    )
    _flag(p, "--no_warmup", help="skip assets.extra warm-up requests")
    _flag(
        p,
        "--enable_signature_method_name_check",
        help="Classify/Regress refuse signatures of another method name (as TF Serving)",
    )
    serve_flags.add_flags(p, d)
    _flag(p, "--verbose")
    return p


def main(argv=None) -> int:
    """Parses the flags, sets up logging and runs the server until SIGTERM or SIGINT.

    Args:
        argv: the arguments after the command name; `None` reads `sys.argv`.

    Returns:
        The exit status.
    """
    args = vars(build_parser().parse_args(argv))
    if args["version"]:
        print(serve_flags.version_text())
        return 0
    verbose = args.pop("verbose")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args["model_config_file"] and not args["model_base_path"]:
        raise SystemExit("genkeras serve: give --model_config_file or --model_base_path")
    problem = _check_limits(args) or serve_flags.check(args)
    if problem:
        print(f"genkeras serve: {problem}", file=sys.stderr)
        return 2
    try:
        return run_server(ServerOptions(**serve_flags.settle(args)))
    except StartupError as error:
        print(f"genkeras serve: {error}", file=sys.stderr)
        return 2


def _check_limits(args: dict) -> str | None:
    """The first limit flag with a value that cannot work, as one line; None when all can."""
    positive = (
        "max_request_bytes",
        "rest_api_num_threads",
        "grpc_max_threads",
        "http_max_connections",
        "http_read_timeout_seconds",
    )
    for name in positive:
        if args[name] <= 0:
            return f"--{name} {args[name]} must be positive"
    for name in ("rest_api_timeout_in_ms", "max_queued_requests", "max_execution_batch_size"):
        if args[name] < 0:
            return f"--{name} {args[name]} must be 0 or more"
    for name in ("max_tensor_elements", "max_inflight_request_bytes"):
        if args[name] is not None and args[name] <= 0:
            return f"--{name} {args[name]} must be positive"
    return None


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
