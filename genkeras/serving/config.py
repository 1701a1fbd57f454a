"""Reading the files TF Serving reads: ModelServerConfig, BatchingParameters, MonitoringConfig.

Paths. `serving/models.config` names base paths as the TF Serving container sees them
(`/models/conv_ae`, with `savedmodels/` mounted at `/models` by docker-compose). `genkeras serve`
maps them back to this machine with `--path_map CONTAINER=HOST` (repeatable). The default map
is `/models=<folder of the config file>/../savedmodels`, the same mount docker-compose.yml
declares, so `genkeras serve --model_config_file serving/models.config` serves `savedmodels/`
from any working directory. A base path that exists as written is used as is; a relative one is
resolved against the config file's folder.

A file that cannot be read or parsed raises `ConfigError` with one line naming the file, the
line and column and the problem, starting as TF Serving's log line does (`Error parsing
text-format tensorflow.serving.ModelServerConfig: ...`); `genkeras serve` prints it and exits
with status 2 (TF Serving exits non-zero too, `util/proto_util.h`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from genkeras.serving.protos import BatchingParameters, MonitoringConfig

DEFAULT_MOUNT = "/models"
# gs://, s3://, hdfs://...: TF Serving reads these through TensorFlow's file systems.
REMOTE_PATH = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class ConfigError(ValueError):
    """A config file that cannot be read, parsed or served; the message is one line."""


def read_text_proto(path: str | os.PathLike, message):
    """Parses the text proto at `path` into `message`.

    Raises:
        ConfigError: the file cannot be read, or is not a text proto of `message`'s type (the
            message names the file, the line and the column).
    """
    kind = message.DESCRIPTOR.full_name
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise ConfigError(f"Cannot read {kind} file {path}: {why}") from None
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as error:
        problem = str(error)
        line, column = error.GetLine(), error.GetColumn()
        if line is not None:  # the message starts "LINE:COLUMN : "
            problem = problem.partition(" : ")[2] or problem
        where = f"{path}:{line}:{column}" if line is not None else str(path)
        problem = " ".join(problem.split())  # one line
        raise ConfigError(f"Error parsing text-format {kind}: {where}: {problem}") from None


def read_model_server_config(path) -> model_server_config_pb2.ModelServerConfig:
    """The ModelServerConfig at `path`, with the checks TF Serving makes before serving it.

    Raises:
        ConfigError: unreadable or unparsable, not a `model_config_list`, a model name
            twice, a platform other than `tensorflow`, or a base path on a remote file system.
    """
    config = read_text_proto(path, model_server_config_pb2.ModelServerConfig())
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{path}: only model_config_list is supported")
    names = [model.name for model in config.model_config_list.config]
    if len(names) != len(set(names)):
        raise ConfigError(f"{path}: a model name appears twice")
    for model in config.model_config_list.config:
        if model.model_platform not in ("", "tensorflow"):
            raise ConfigError(
                f"{path}: model {model.name}: unsupported platform {model.model_platform!r}"
            )
        if REMOTE_PATH.match(model.base_path):
            raise ConfigError(
                f"{path}: model {model.name}: base_path {model.base_path} is on a remote file "
                "system, which genkeras serve does not read; copy the model to a local folder"
            )
    return config


def read_batching_parameters(path) -> BatchingParameters:
    return read_text_proto(path, BatchingParameters())


def read_monitoring_config(path) -> MonitoringConfig:
    return read_text_proto(path, MonitoringConfig())


def parse_path_maps(
    items: list[str] | None, config_file: str | os.PathLike | None
) -> list[tuple[str, Path]]:
    """`["/models=savedmodels"]` -> `[("/models", Path(...))]`; the default mount when empty."""
    maps = []
    for item in items or []:
        container, _, host = item.partition("=")
        if not container or not host:
            raise ValueError(f"--path_map wants CONTAINER=HOST, got {item!r}")
        maps.append((container.rstrip("/") or "/", Path(host).expanduser().resolve()))
    if not maps and config_file is not None:
        maps.append(
            (DEFAULT_MOUNT, (Path(config_file).resolve().parent / ".." / "savedmodels").resolve())
        )
    return maps


def resolve_base_path(base_path: str, config_file=None, path_maps=()) -> Path:
    """Where `base_path` (as written in models.config) lives on this machine."""
    path = Path(base_path)
    for container, host in path_maps:
        if base_path == container or base_path.startswith(container.rstrip("/") + "/"):
            return host / base_path[len(container) :].lstrip("/")
    if path.is_absolute():
        return path
    anchor = Path(config_file).resolve().parent if config_file else Path.cwd()
    return (anchor / path).resolve()


def aspired_versions(model_config, on_disk: list[int]) -> list[int]:
    """The versions `model_version_policy` asks for, among the integer folders `on_disk`."""
    on_disk = sorted(set(on_disk))
    policy = model_config.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return on_disk
    if kind == "specific":
        return sorted(v for v in set(policy.specific.versions) if v in on_disk)
    count = policy.latest.num_versions if kind == "latest" and policy.latest.num_versions > 0 else 1
    return on_disk[-count:]
