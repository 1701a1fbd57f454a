"""Running the server: the model manager, the batcher, and the gRPC and REST servers.

`run_server` takes options already parsed (`genkeras/commands/serve.py` reads them from TF
Serving's flags) and serves until SIGTERM or SIGINT. Differences from TF Serving, on purpose:
it binds 127.0.0.1 unless `host` says otherwise; it watches the config file every 2 s by
default; `path_map` entries (`CONTAINER=HOST`) map the container paths of models.config
(default `/models=<config folder>/../savedmodels`, docker-compose's mount); request bodies and
gRPC messages are limited to `max_request_bytes` (64 MiB). The REST port also serves the
latent explorer web page at `/` (see `genkeras/serving/explorer/`).

Both ports are checked and bound before any model loads: a port out of range, the same port
twice, or a port another program holds (gRPC never shares one through SO_REUSEPORT) raises
`StartupError` with one line naming the port and its flag; so do a config file that cannot
be read or parsed (naming the file, line and column: `config.ConfigError`), a gRPC socket path
or channel argument that cannot work (`grpc_options.py`) and TensorFlow settings that conflict
(`tf_runtime.py`).

TensorFlow, gRPC and the serving modules are imported when the server runs, so a command
line can build its parser from `ServerOptions` and answer `--help` at once.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import signal
import socket
import threading

log = logging.getLogger("genkeras.serving")

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
# TF Serving's default for --grpc_max_threads and --rest_api_num_threads: 4 per CPU.
CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class StartupError(Exception):
    """A problem found before any model loads; its message is one line naming the flag."""


@dataclasses.dataclass
class ServerOptions:
    """What to serve and how; each field is the `genkeras serve` flag of the same name.

    Attributes:
        port: gRPC port (0: no gRPC).
        rest_api_port: REST port (0: no REST).
        host: the address to bind.
        model_config_file: a ModelServerConfig text proto (serving/models.config), watched.
        model_name: the single model's name, with `model_base_path`.
        model_base_path: the single model's base path (instead of a config file).
        path_map: `CONTAINER=HOST` maps of the config's base paths (default
            `/models=<config dir>/../savedmodels`).
        model_config_file_poll_wait_seconds: how often the config file is checked (0: never).
        file_system_poll_wait_seconds: how often base paths are polled for versions (0: once).
        enable_batching: batch concurrent requests.
        batching_parameters_file: BatchingParameters text proto for the batcher.
        enable_per_model_batching_parameters: batch a version only with its own
            batching_params.pbtxt (as TF Serving).
        monitoring_config_file: MonitoringConfig text proto (Prometheus page).
        rest_api_num_threads: how many REST requests run at once.
        grpc_max_threads: how many gRPC calls run at once (TF Serving's default, 4 per CPU:
            each running call holds its whole message in memory).
        max_request_bytes: the largest REST body or gRPC message accepted.
        allow_version_labels_for_unavailable_models: accepted for compatibility; labels may
            always point at any version here.
        no_warmup: skip the assets.extra warm-up requests.
        enable_signature_method_name_check: Classify and Regress refuse signatures whose
            method name is not theirs (TF Serving's flag, off by default there too).
        rest_api_timeout_in_ms: a REST request still unanswered this long after its headers
            arrived answers 504 and its work stops (0: no limit; TF Serving's flag).
        max_tensor_elements: the most values an input tensor, or a tensor of the answer, may
            hold; `None` is `max_request_bytes // 4`.
        max_queued_requests: requests of each API (REST, gRPC) that may wait for a place;
            one more is refused at once (503 / RESOURCE_EXHAUSTED).
        max_inflight_request_bytes: REST bodies and gRPC messages over 256 KiB run only while
            their sizes in flight fit under this (one always runs); `None` is
            `max_request_bytes`.
        max_execution_batch_size: a request with a batch dimension runs this many rows at a
            time (0: all at once).
        http_read_timeout_seconds: a REST connection must send a request's headers, and then
            its body, within this many seconds (idle keep-alive connections close after it).
        http_max_connections: REST connections served at once; more are answered 503.
        grpc_socket_path: a Unix socket gRPC listens on as well as `port` (TF Serving's flag).
        grpc_channel_arguments: `key=value,...` gRPC server options (TF Serving's flag,
            read by `grpc_options.parse_channel_arguments`).
        rest_api_enable_cors_support: TF Serving's CORS headers on every `/v1/` answer.
        tensorflow_session_parallelism, tensorflow_intra_op_parallelism,
            tensorflow_inter_op_parallelism, per_process_gpu_memory_fraction: TensorFlow's
            thread pools and GPU memory share, as TF Serving sets them (`tf_runtime.py`).
        enable_grpc_healthcheck_service: serve `grpc.health.v1.Health` (`health.py`).
        enable_serialization_as_tensor_content: Predict answers numbers in `tensor_content`.
    """

    port: int = 8500
    rest_api_port: int = 8501
    host: str = "127.0.0.1"
    model_config_file: str | None = None
    model_name: str = "default"
    model_base_path: str | None = None
    path_map: list[str] = dataclasses.field(default_factory=list)
    model_config_file_poll_wait_seconds: float = 2.0
    file_system_poll_wait_seconds: float = 1.0
    enable_batching: bool = False
    batching_parameters_file: str | None = None
    enable_per_model_batching_parameters: bool = False
    monitoring_config_file: str | None = None
    rest_api_num_threads: int = 32
    grpc_max_threads: int = 4 * CPUS
    max_request_bytes: int = 64 * 1024 * 1024
    allow_version_labels_for_unavailable_models: bool = False
    no_warmup: bool = False
    enable_signature_method_name_check: bool = False
    rest_api_timeout_in_ms: int = 30000
    max_tensor_elements: int | None = None
    max_queued_requests: int = 64
    max_inflight_request_bytes: int | None = None
    max_execution_batch_size: int = 64
    http_read_timeout_seconds: float = 30.0
    http_max_connections: int = 1024
    grpc_socket_path: str | None = None
    grpc_channel_arguments: str = ""
    rest_api_enable_cors_support: bool = False
    tensorflow_session_parallelism: int = 0
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    per_process_gpu_memory_fraction: float = 0.0
    enable_grpc_healthcheck_service: bool = False
    enable_serialization_as_tensor_content: bool = False


PORT_FLAGS = (("port", "--port"), ("rest_api_port", "--rest_api_port"))


def check_ports(options: ServerOptions) -> None:
    """Checks both ports before anything heavy happens: in range, distinct, free.

    Args:
        options: the server options (`port`, `rest_api_port`, `host`).

    Raises:
        StartupError: one line naming the port and its flag.
    """
    for field, flag in PORT_FLAGS:
        port = getattr(options, field)
        if not 0 <= port <= 65535:
            raise StartupError(
                f"{flag} {port} is out of range: give a port from 1 to 65535 (0 turns it off)"
            )
    if options.port and options.port == options.rest_api_port:
        raise StartupError(
            f"--port and --rest_api_port are both {options.port}: give them different ports"
        )
    for field, flag in PORT_FLAGS:
        port = getattr(options, field)
        if port:
            _probe(options.host, port, flag)


def _probe(host: str, port: int, flag: str) -> None:
    """Binds `host:port` for a moment (no SO_REUSEPORT), raising `StartupError` when taken."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    except OSError as error:
        raise StartupError(f"--host {host}: cannot resolve it ({error})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise port_error(host, port, flag, error) from None


def port_error(host: str, port: int, flag: str, error: OSError) -> StartupError:
    """The one-line `StartupError` for a port that cannot be bound."""
    if error.errno == errno.EADDRINUSE or "in use" in str(error).lower():
        why = "is already in use by another program (another server?)"
    elif error.errno == errno.EACCES:
        why = "needs privileges to bind"
    else:
        why = f"cannot be bound ({error.strerror or error})"
    return StartupError(
        f"{flag} {port}: port {port} on {host} {why}; stop that program or pass a free port "
        f"to {flag}"
    )


def model_server_config(options: ServerOptions):
    """The ModelServerConfig to serve: the config file's, or one model from its base path.

    Args:
        options: the server options.

    Returns:
        A `ModelServerConfig`.

    Raises:
        ValueError: when neither `model_config_file` nor `model_base_path` is given.
    """
    from tensorflow_serving.config import model_server_config_pb2

    from genkeras.serving import config as config_lib

    if options.model_config_file:
        return config_lib.read_model_server_config(options.model_config_file)
    if not options.model_base_path:
        raise ValueError("give model_config_file or model_base_path")
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name, model.base_path, model.model_platform = (
        options.model_name,
        options.model_base_path,
        "tensorflow",
    )
    return config


def _batcher(options: ServerOptions):
    from genkeras.serving import config as config_lib
    from genkeras.serving.batching import Batcher

    if not options.enable_batching:
        return None
    params = (
        config_lib.read_batching_parameters(options.batching_parameters_file)
        if options.batching_parameters_file
        else None
    )
    return Batcher(params)


def _prometheus_path(options: ServerOptions) -> str | None:
    from genkeras.serving import config as config_lib

    if not options.monitoring_config_file:
        return None
    monitoring = config_lib.read_monitoring_config(options.monitoring_config_file)
    if not monitoring.prometheus_config.enable:
        return None
    return monitoring.prometheus_config.path or DEFAULT_PROMETHEUS_PATH


def run_server(options: ServerOptions) -> int:
    """Checks and binds the ports, loads the models, serves until SIGTERM or SIGINT.

    Prints `genkeras serve: ready` once both servers listen. Must run in the main thread
    (it installs the signal handlers).

    Args:
        options: the server options.

    Returns:
        The exit status, 0 after a clean stop.

    Raises:
        StartupError: a port out of range, repeated or taken, or a config file that cannot
            be read or parsed (before any model loads).
    """
    check_ports(options)
    from genkeras.serving import config as config_lib
    from genkeras.serving import grpc_options, tf_runtime

    try:
        channel_arguments = grpc_options.parse_channel_arguments(options.grpc_channel_arguments)
        if options.grpc_socket_path:
            grpc_options.check_socket_path(options.grpc_socket_path)
    except ValueError as error:
        raise StartupError(str(error)) from None

    try:  # read before TensorFlow loads: a bad file is one line and exit status 2
        server_config = model_server_config(options)
        batcher = _batcher(options)
        prometheus_path = _prometheus_path(options)
    except config_lib.ConfigError as error:
        raise StartupError(str(error)) from None
    path_maps = config_lib.parse_path_maps(options.path_map, options.model_config_file)

    from genkeras.serving.admission import Limiter, Watchdog, tune_malloc

    tune_malloc()  # before TensorFlow starts its threads
    try:  # before anything starts TensorFlow's runtime
        tf_runtime.configure(
            options.tensorflow_session_parallelism,
            options.tensorflow_intra_op_parallelism,
            options.tensorflow_inter_op_parallelism,
            options.per_process_gpu_memory_fraction,
        )
    except ValueError as error:
        raise StartupError(str(error)) from None

    from genkeras.serving.grpc_service import make_grpc_server
    from genkeras.serving.health import HealthService
    from genkeras.serving.manager import ModelManager
    from genkeras.serving.metrics import Metrics
    from genkeras.serving.rest import RestApi, RestServer
    from genkeras.serving.servable import RunLimits

    max_elements = options.max_tensor_elements or options.max_request_bytes // 4
    metrics, watchdog = Metrics(), Watchdog()
    limiter = Limiter(
        {"rest": options.rest_api_num_threads, "grpc": options.grpc_max_threads},
        options.max_queued_requests,
        options.max_inflight_request_bytes or options.max_request_bytes,
    )

    grpc_server = rest_server = None
    health = HealthService() if options.enable_grpc_healthcheck_service else None
    if options.port or options.grpc_socket_path:
        try:
            grpc_server, port = make_grpc_server(
                None,
                f"{options.host}:{options.port}" if options.port else None,
                options.max_request_bytes,
                options.grpc_max_threads,
                options.max_queued_requests,
                metrics,
                limiter,
                watchdog,
                max_elements,
                channel_arguments,
                options.grpc_socket_path,
                health,
            )
        except OSError as error:
            if "unix:" in str(error):
                raise StartupError(f"--grpc_socket_path: {error}") from None
            raise port_error(options.host, options.port, "--port", error) from None
        for servicer in grpc_server.genkeras_servicers:
            servicer.check_method_name = options.enable_signature_method_name_check
            servicer.tensor_content = options.enable_serialization_as_tensor_content
    if options.rest_api_port:
        try:
            rest_server = RestServer(
                (options.host, options.rest_api_port),
                RestApi(None, metrics, max_elements),
                options.max_request_bytes,
                limiter,
                watchdog,
                options.rest_api_timeout_in_ms / 1000,
                options.http_max_connections,
                options.http_read_timeout_seconds,
                prometheus_path,
            )
        except OSError as error:
            raise port_error(
                options.host, options.rest_api_port, "--rest_api_port", error
            ) from None
        rest_server.api.check_method_name = options.enable_signature_method_name_check
        rest_server.cors_support = options.rest_api_enable_cors_support

    manager = ModelManager(
        server_config,
        options.model_config_file,
        path_maps,
        batcher,
        warmup=not options.no_warmup,
        per_model_batching=options.enable_per_model_batching_parameters,
        limits=RunLimits(max_elements, options.max_execution_batch_size),
    )
    for name in manager.model_names():
        log.info("Model %s: base path %s", name, manager.base_path(name))
    manager.start(
        options.file_system_poll_wait_seconds, options.model_config_file_poll_wait_seconds
    )

    stop = threading.Event()
    if grpc_server is not None:
        for servicer in grpc_server.genkeras_servicers:
            servicer.manager = manager
        grpc_server.start()
        if port:
            log.info("Running gRPC ModelServer at %s:%d ...", options.host, port)
        if options.grpc_socket_path:
            log.info("Running gRPC ModelServer at UNIX socket %s ...", options.grpc_socket_path)
    if rest_server is not None:
        rest_server.api.manager = manager
        threading.Thread(target=rest_server.serve_forever, daemon=True).start()
        log.info(
            "Exporting HTTP/REST API at:%s:%d ...", options.host, rest_server.server_address[1]
        )

    def shutdown(*_):
        stop.set()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    print("genkeras serve: ready", flush=True)
    stop.wait()
    manager.stop()
    watchdog.stop()
    if health is not None:
        health.shutdown()
    if rest_server is not None:
        rest_server.shutdown()
    if grpc_server is not None:
        grpc_server.stop(grace=2).wait()
    return 0
