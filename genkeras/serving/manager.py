"""Which model versions are loaded: base-path polling, version policies, labels, status.

Mirrors TF Serving's ServerCore with the availability-preserving policy: a new aspired
version is loaded before the one it replaces is unloaded, so a request never finds the model
empty; a version that fails to load is reported (state END, its error in `status`) while the
previously loaded version keeps serving. Requests hold a reference to the `Servable` they
resolved, so an unload never cuts a request short.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from pathlib import Path

import numpy as np

from genkeras.serving import config as config_lib
from genkeras.serving.errors import (
    ServingError,
    failed_precondition,
    internal,
    invalid_argument,
    not_found,
)

log = logging.getLogger("genkeras.serving")

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"


def _dtype_name(enum_value: int) -> str:
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(enum_value)


def _type_string(enum_name: str) -> str:
    from genkeras.serving.json_tensor import TYPE_NAMES

    return TYPE_NAMES.get(enum_name, enum_name.removeprefix("DT_").lower())


def read_signature_defs(path: Path):
    """The `serve` MetaGraph's SignatureDef map, read from saved_model.pb as TF Serving reads it."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    pb = path / "saved_model.pb"
    if not pb.exists():
        raise ServingError(
            not_found(
                f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}"
            )
        )
    try:
        proto.ParseFromString(pb.read_bytes())
    except Exception:  # noqa: BLE001 - any parse failure is data loss
        raise ServingError(("DATA_LOSS", f"Can't parse {pb} as binary proto")) from None
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph.signature_def
    raise ServingError(
        not_found(f"Could not find meta graph def matching supplied tags: {{ serve }} in {path}")
    )


class Servable:
    """One loaded version: its signature defs and the functions that run them."""

    def __init__(self, name: str, version: int, path: Path):
        import tensorflow as tf

        self.name, self.version, self.path = name, version, Path(path)
        self.signature_defs = read_signature_defs(self.path)
        try:
            self.loaded = tf.saved_model.load(str(self.path), tags=["serve"])
        except Exception as error:  # noqa: BLE001
            raise ServingError(_status_of(error)) from None
        self.functions = dict(self.loaded.signatures)
        self.inputs = {
            key: {alias: info for alias, info in sig.inputs.items()}
            for key, sig in self.signature_defs.items()
        }
        self.batcher = None  # set by the manager when batching is on

    # -- signature look-up ----------------------------------------------------------------------
    def signature(self, signature_name: str):
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signature_defs or key not in self.functions:
            raise ServingError(failed_precondition(f'Serving signature key "{key}" not found.'))
        return key, self.signature_defs[key]

    def input_dtypes(self, signature_name: str) -> dict[str, str]:
        """REST's view: unknown signature is INVALID_ARGUMENT there (GetInfoMap)."""
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signature_defs:
            raise ServingError(
                invalid_argument(f'Serving signature name: "{key}" not found in signature def')
            )
        return {
            alias: _dtype_name(info.dtype)
            for alias, info in self.signature_defs[key].inputs.items()
        }

    # -- running --------------------------------------------------------------------------------
    def validate(self, key: str, signature, inputs: dict[str, np.ndarray]) -> None:
        wanted = set(signature.inputs)
        sent = set(inputs)
        if len(sent) != len(wanted):
            raise ServingError(
                invalid_argument(
                    f"input size does not match signature: {len(sent)}!={len(wanted)} "
                    f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
                    f"Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
                    f"Missing but required: {{{','.join(sorted(wanted - sent))}}}."
                )
            )
        for alias in sorted(sent):
            if alias not in wanted:
                raise ServingError(
                    invalid_argument(
                        f"input tensor alias not found in signature: {alias}. "
                        f"Inputs expected to be in the set {{{','.join(sorted(wanted))}}}."
                    )
                )
        for index, alias in enumerate(sorted(wanted)):
            info = signature.inputs[alias]
            expected = _dtype_name(info.dtype)
            array = inputs[alias]
            got = _numpy_dtype_enum(array)
            if got != expected:
                raise ServingError(
                    invalid_argument(
                        f"Expects arg[{index}] to be {_type_string(expected)} but "
                        f"{_type_string(got)} is provided"
                    )
                )
            if not info.tensor_shape.unknown_rank:
                dims = [d.size for d in info.tensor_shape.dim]
                if len(dims) != array.ndim or any(
                    d not in (-1, s) for d, s in zip(dims, array.shape, strict=False)
                ):
                    raise ServingError(
                        invalid_argument(
                            f"input tensor {alias} has shape [{','.join(map(str, array.shape))}] but the "  # noqa: E501
                            f"signature {key} expects [{','.join(map(str, dims))}] (-1: any size)"
                        )
                    )

    def run_unbatched(self, key: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        try:
            outputs = self.functions[key](**{k: tf.constant(v) for k, v in inputs.items()})
        except Exception as error:  # noqa: BLE001
            raise ServingError(_status_of(error)) from None
        return {k: v.numpy() for k, v in outputs.items()}

    def batchable(self, key: str) -> bool:
        """Every input has a leading dimension of any size (TF Serving's batching needs one)."""
        signature = self.signature_defs[key]
        for info in signature.inputs.values():
            shape = info.tensor_shape
            if shape.unknown_rank or not shape.dim or shape.dim[0].size != -1:
                return False
        return bool(signature.inputs)

    def predict(self, signature_name: str, inputs: dict[str, np.ndarray], output_filter=()):
        """Runs one request. Returns `(signature key, outputs)`."""
        key, signature = self.signature(signature_name)
        if signature.method_name and signature.method_name not in (
            PREDICT_METHOD,
            "tensorflow/serving/classify",
            "tensorflow/serving/regress",
        ):
            raise ServingError(
                internal(f"Expected prediction signature method_name, was: {signature.method_name}")
            )
        self.validate(key, signature, inputs)
        for alias in output_filter:
            if alias not in signature.outputs:
                raise ServingError(
                    invalid_argument(
                        f"output tensor alias not found in signature: {alias} Outputs expected to be "  # noqa: E501
                        f"in the set {{{','.join(sorted(signature.outputs))}}}."
                    )
                )
        if len(set(output_filter)) != len(output_filter):
            raise ServingError(invalid_argument("duplicate output tensor alias"))
        if self.batcher is not None and self.batchable(key):
            outputs = self.batcher.run(
                (self.name, self.version, key), lambda x: self.run_unbatched(key, x), inputs
            )
        else:
            outputs = self.run_unbatched(key, inputs)
        if output_filter:
            outputs = {alias: outputs[alias] for alias in output_filter}
        return key, outputs

    def warm_up(self) -> int:
        """Replays `assets.extra/tf_serving_warmup_requests` (PredictionLog records), as TF Serving does."""  # noqa: E501
        path = self.path / WARMUP_FILE
        if not path.exists():
            return 0
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        count = 0
        for record in tf.data.TFRecordDataset(str(path)):
            entry = prediction_log_pb2.PredictionLog()
            entry.ParseFromString(record.numpy())
            if entry.WhichOneof("log_type") != "predict_log":
                raise ServingError(
                    invalid_argument("Unsupported log_type for warmup: only predict_log here")
                )
            request = entry.predict_log.request
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            self.predict(request.model_spec.signature_name, inputs, tuple(request.output_filter))
            count += 1
        return count


def _numpy_dtype_enum(array: np.ndarray) -> str:
    from genkeras.serving.json_tensor import NUMPY_DTYPES

    for name, dtype in NUMPY_DTYPES.items():
        if array.dtype == dtype:
            return name
    if array.dtype.kind in "SU":
        return "DT_STRING"
    return f"DT_{array.dtype.name.upper()}"


def _status_of(error: Exception) -> tuple[str, str]:
    """A canonical (code, message) for an exception raised while loading or running."""
    import tensorflow as tf

    if isinstance(error, ServingError):
        return error.code, error.message
    if isinstance(error, tf.errors.OpError):
        from tensorflow_serving.apis import status_pb2

        codes = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type
        try:
            code = codes.values_by_number[error.error_code].name
        except KeyError:
            code = "UNKNOWN"
        return code, error.message
    if isinstance(error, (ValueError, TypeError)):
        return "INVALID_ARGUMENT", str(error)
    if isinstance(error, FileNotFoundError):
        return "NOT_FOUND", str(error)
    return "UNKNOWN", f"{type(error).__name__}: {error}"


@dataclasses.dataclass
class VersionState:
    state: str  # START, LOADING, AVAILABLE, UNLOADING, END (ModelVersionStatus.State names)
    error_code: str = "OK"
    error_message: str = ""
    servable: Servable | None = None
    fingerprint: tuple | None = None


def _fingerprint(path: Path) -> tuple:
    """Changes when a version folder's SavedModel is rewritten (a failed load is retried then)."""
    items = []
    for name in ("saved_model.pb", "variables/variables.index", str(WARMUP_FILE)):
        try:
            stat = (path / name).stat()
            items.append((name, stat.st_size, stat.st_mtime_ns))
        except OSError:
            items.append((name, None, None))
    return tuple(items)


class ModelManager:
    """Loads what the config asks for and answers look-ups by name, version or label."""

    def __init__(
        self,
        server_config,
        config_file=None,
        path_maps=(),
        batcher=None,
        warmup=True,
        per_model_batching=False,
    ):
        self.config_file = config_file
        self.path_maps = list(path_maps)
        self.batcher = batcher
        self.per_model_batching = per_model_batching
        self.warmup = warmup
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._models: dict = {}  # name -> ModelConfig
        self._states: dict[str, dict[int, VersionState]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.set_config(server_config)

    # -- configuration --------------------------------------------------------------------------
    def set_config(self, server_config) -> None:
        with self._lock:
            self._models = {m.name: m for m in server_config.model_config_list.config}
            for name in list(self._states):
                if name not in self._models:  # removed from the config: unload everything
                    for state in self._states[name].values():
                        if state.servable is not None:
                            state.servable, state.state = None, "END"
            for name in self._models:
                self._states.setdefault(name, {})

    def base_path(self, name: str) -> Path:
        return config_lib.resolve_base_path(
            self._models[name].base_path, self.config_file, self.path_maps
        )

    # -- polling --------------------------------------------------------------------------------
    def poll_once(self) -> None:
        """One pass over every model's base path: load aspired versions, unload the others."""
        with self._load_lock:
            with self._lock:
                models = dict(self._models)
            for name, model in models.items():
                try:
                    self._poll_model(name, model)
                except Exception:  # noqa: BLE001 - the poller must survive anything
                    log.exception("polling %s failed", name)

    def _poll_model(self, name: str, model) -> None:
        base = self.base_path(name)
        try:
            on_disk = sorted(
                int(p.name) for p in base.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)
            )
        except OSError:
            on_disk = []
        aspired = config_lib.aspired_versions(model, on_disk)
        states = self._states.setdefault(name, {})
        for version in aspired:
            path = base / str(version)
            fingerprint = _fingerprint(path)
            current = states.get(version)
            if current is not None and current.state in ("AVAILABLE", "LOADING"):
                continue
            if (
                current is not None
                and current.state == "END"
                and current.fingerprint == fingerprint
            ):
                continue  # failed (or unloaded) and unchanged since: don't retry in a loop
            with self._lock:
                states[version] = VersionState("LOADING", fingerprint=fingerprint)
            log.info("Loading servable: {name: %s version: %d}", name, version)
            started = time.perf_counter()
            try:
                servable = Servable(name, version, path)
                servable.batcher = self._batcher_for(path)
                if self.warmup:
                    servable.warm_up()
            except Exception as error:  # noqa: BLE001
                code, message = _status_of(error)
                log.error(
                    "Loading servable: {name: %s version: %d} failed: %s", name, version, message
                )
                with self._lock:
                    states[version] = VersionState("END", code, message, fingerprint=fingerprint)
                continue
            with self._lock:
                states[version] = VersionState(
                    "AVAILABLE", servable=servable, fingerprint=fingerprint
                )
            log.info(
                "Successfully loaded servable version {name: %s version: %d} in %.2f s",
                name,
                version,
                time.perf_counter() - started,
            )
        with self._lock:
            aspired_available = any(states[v].state == "AVAILABLE" for v in aspired if v in states)
            for version, state in states.items():
                if version in aspired or state.servable is None:
                    continue
                gone = version not in on_disk
                if aspired_available or gone or not aspired:
                    # Availability preserving: unload only once an aspired version serves.
                    state.servable, state.state, state.error_code, state.error_message = (
                        None,
                        "END",
                        "OK",
                        "",
                    )

    def _batcher_for(self, path: Path):
        """The global batcher, or with per-model parameters one from batching_params.pbtxt (or none)."""  # noqa: E501
        if self.batcher is None or not self.per_model_batching:
            return self.batcher
        params_file = path / "batching_params.pbtxt"
        if not params_file.exists():
            return None
        from genkeras.serving.batching import Batcher

        return Batcher(config_lib.read_batching_parameters(params_file))

    def start(
        self, file_system_poll_wait_seconds: float = 1.0, config_poll_wait_seconds: float = 0.0
    ) -> None:
        self.poll_once()
        if file_system_poll_wait_seconds > 0:
            self._spawn(self._poll_loop, file_system_poll_wait_seconds)
        if config_poll_wait_seconds > 0 and self.config_file:
            self._spawn(self._config_loop, config_poll_wait_seconds)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll_loop(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.poll_once()

    def _config_loop(self, seconds: float) -> None:
        last = self._config_stamp()
        while not self._stop.wait(seconds):
            stamp = self._config_stamp()
            if stamp == last:
                continue
            last = stamp
            try:
                self.set_config(config_lib.read_model_server_config(self.config_file))
                log.info("Reloaded model config %s", self.config_file)
                self.poll_once()
            except Exception as error:  # noqa: BLE001 - keep the old config on a bad edit
                log.error("Ignoring model config %s: %s", self.config_file, error)

    def _config_stamp(self):
        try:
            stat = os.stat(self.config_file)
            return stat.st_mtime_ns, stat.st_size
        except OSError:
            return None

    def stop(self) -> None:
        self._stop.set()

    # -- look-ups -------------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def label_version(self, name: str, label: str) -> int:
        with self._lock:
            model = self._models.get(name)
            if model is None or label not in model.version_labels:
                raise ServingError(
                    invalid_argument(f"Unrecognized servable version label: {label}")
                )
            return model.version_labels[label]

    def get_servable(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> Servable:
        if version is not None and label is not None:
            raise ServingError(
                invalid_argument(
                    f"Both model version ({version}) and model version label ({label}) cannot be supplied."  # noqa: E501
                )
            )
        if label is not None:
            version = self.label_version(name, label)
        with self._lock:
            states = self._states.get(name, {}) if name in self._models else {}
            if version is None:
                available = [v for v, s in states.items() if s.state == "AVAILABLE" and s.servable]
                if not available:
                    raise ServingError(not_found(f"Servable not found for request: Latest({name})"))
                return states[max(available)].servable
            state = states.get(version)
            if state is None or state.state != "AVAILABLE" or state.servable is None:
                raise ServingError(
                    not_found(f"Servable not found for request: Specific({name}, {version})")
                )
            return state.servable

    def status(self, name: str, version: int | None = None, label: str | None = None):
        """GetModelStatusResponse for the model (one version when asked by number or label)."""
        from tensorflow_serving.apis import get_model_status_pb2

        if version is not None and label is not None:
            raise ServingError(
                invalid_argument(
                    f"Both model version ({version}) and model version label ({label}) cannot be supplied."  # noqa: E501
                )
            )
        if label is not None:
            version = self.label_version(name, label)
        response = get_model_status_pb2.GetModelStatusResponse()
        with self._lock:
            states = dict(self._states.get(name, {}))
        if version is not None:
            if version not in states:
                raise ServingError(not_found(f"Could not find version {version} of model {name}"))
            chosen = [(version, states[version])]
        else:
            if not states:
                raise ServingError(not_found(f"Could not find any versions of model {name}"))
            chosen = sorted(states.items())
        for v, state in chosen:
            entry = response.model_version_status.add()
            entry.version = v
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
            entry.status.error_code = _error_code_value(state.error_code)
            entry.status.error_message = state.error_message
        return response

    def metadata(self, name: str, version: int | None = None, label: str | None = None):
        """GetModelMetadataResponse with the `signature_def` field, as TF Serving answers it."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        servable = self.get_servable(name, version, label)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, value in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(value)
        response.metadata["signature_def"].Pack(signature_map)
        return response


def _error_code_value(name: str) -> int:
    from tensorflow_serving.apis import status_pb2

    codes = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type
    value = codes.values_by_name.get(name) or codes.values_by_name["UNKNOWN"]
    return value.number
