"""Running the server: the model manager, the batcher, and the gRPC and REST servers.

`run_server` takes options already parsed (`genkeras/commands/serve.py` reads them from TF
Serving's flags) and serves until SIGTERM or SIGINT. Differences from TF Serving, on purpose:
it binds 127.0.0.1 unless `host` says otherwise; it watches the config file every 2 s by
default; `path_map` entries (`CONTAINER=HOST`) map the container paths of models.config
(default `/models=<config folder>/../savedmodels`, docker-compose's mount); request bodies and
gRPC messages are limited to `max_request_bytes` (64 MiB). The REST port also serves the
latent explorer web page at `/` (see `genkeras/serving/explorer/`).

TensorFlow, gRPC and the serving modules are imported when the server runs, so a command
line can build its parser from `ServerOptions` and answer `--help` at once.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading

log = logging.getLogger("genkeras.serving")

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


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
        grpc_max_threads: gRPC worker threads.
        max_request_bytes: the largest REST body or gRPC message accepted.
        allow_version_labels_for_unavailable_models: accepted for compatibility; labels may
            always point at any version here.
        no_warmup: skip the assets.extra warm-up requests.
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
    grpc_max_threads: int = 32
    max_request_bytes: int = 64 * 1024 * 1024
    allow_version_labels_for_unavailable_models: bool = False
    no_warmup: bool = False


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
    """Loads the models, starts the gRPC and REST servers and serves until SIGTERM or SIGINT.

    Prints `genkeras serve: ready` once both servers listen. Must run in the main thread
    (it installs the signal handlers).

    Args:
        options: the server options.

    Returns:
        The exit status, 0 after a clean stop.
    """
    from genkeras.serving import config as config_lib
    from genkeras.serving.grpc_service import make_grpc_server
    from genkeras.serving.manager import ModelManager
    from genkeras.serving.rest import RestApi, RestServer

    server_config = model_server_config(options)
    path_maps = config_lib.parse_path_maps(options.path_map, options.model_config_file)
    batcher = _batcher(options)
    prometheus_path = _prometheus_path(options)

    manager = ModelManager(
        server_config,
        options.model_config_file,
        path_maps,
        batcher,
        warmup=not options.no_warmup,
        per_model_batching=options.enable_per_model_batching_parameters,
    )
    manager.start(
        options.file_system_poll_wait_seconds, options.model_config_file_poll_wait_seconds
    )
    for name in manager.model_names():
        log.info("Model %s: base path %s", name, manager.base_path(name))

    stop = threading.Event()
    grpc_server = rest_server = None
    if options.port:
        grpc_server, port = make_grpc_server(
            manager,
            f"{options.host}:{options.port}",
            options.max_request_bytes,
            options.grpc_max_threads,
        )
        grpc_server.start()
        log.info("Running gRPC ModelServer at %s:%d ...", options.host, port)
    if options.rest_api_port:
        api = RestApi(manager)
        rest_server = RestServer(
            (options.host, options.rest_api_port),
            api,
            options.max_request_bytes,
            options.rest_api_num_threads,
            prometheus_path,
        )
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
    if rest_server is not None:
        rest_server.shutdown()
    if grpc_server is not None:
        grpc_server.stop(grace=2).wait()
    return 0
