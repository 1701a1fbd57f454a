"""A client for TF Serving (or `genkeras serve`) over gRPC or REST, returning numpy arrays.

    from genkeras.serving import Client
    client = Client("127.0.0.1", 8500)                       # gRPC
    client = Client("127.0.0.1", 8501, protocol="rest")      # REST
    z = client.encode("conv_ae", images)                     # float32 [N, 16]
    images = client.decode("conv_ae", z)
    images = client.sample("vae", num=8, seed=0)

Every method takes `version=` or `label=` to pin a version. Over REST, floats are sent in
TF Serving's own number format (six significant digits when they read back as the same
float32, else nine), as TF Serving writes its answers, so REST, gRPC and an in-process call
on the SavedModel give identical arrays.
"""

from __future__ import annotations

import http.client
import json
import threading

import numpy as np

from genkeras.serving import json_encode, json_fast
from genkeras.serving.dtypes import BY_NAME, BY_NUMBER, TABLE

# The types the client sends as they are, as `tensor_content` (float64 goes out as float32,
# other integers as int32).
_SENT = {
    np.dtype(entry.numpy): entry
    for entry in TABLE
    if entry.name in ("DT_FLOAT", "DT_DOUBLE", "DT_INT32", "DT_INT64", "DT_BOOL", "DT_UINT8")
}
# The types REST outputs are read back as (any other output reads as float32).
_REST_READ = {
    name: BY_NAME[name].numpy
    for name in "DT_FLOAT DT_DOUBLE DT_INT32 DT_INT64 DT_BOOL DT_UINT8 DT_STRING".split()
}


class ServingClientError(RuntimeError):
    """A request the server refused: `code` (gRPC status name) and, over REST, `http_status`."""

    def __init__(self, code: str, message: str, http_status: int | None = None):
        self.code, self.message, self.http_status = code, message, http_status
        super().__init__(
            f"{code}: {message}" if http_status is None else f"HTTP {http_status}: {message}"
        )


def array_to_proto(array: np.ndarray):
    from tensorflow.core.framework import tensor_pb2

    array = np.asarray(array)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    if array.dtype.kind in "iu" and array.dtype not in _SENT:
        array = array.astype(np.int32)
    proto = tensor_pb2.TensorProto(dtype=_SENT[array.dtype].number)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto


def proto_to_array(proto) -> np.ndarray:
    entry = BY_NUMBER[proto.dtype]
    dtype, field = entry.numpy, entry.field
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape).copy()
    values = np.array(list(getattr(proto, field)), dtype=dtype)
    count = int(np.prod(shape)) if shape else 1
    if values.size == count:
        return values.reshape(shape)
    if values.size == 0:
        return np.zeros(shape, dtype=dtype)
    # TF fills the rest with the last value when fewer are given.
    out = np.full(count, values[-1], dtype=dtype)
    out[: values.size] = values
    return out.reshape(shape)


def _json_value(array: np.ndarray) -> str:
    """JSON text of an array; floats as float32 in TF Serving's format (read back exactly)."""
    array = np.asarray(array)
    if array.dtype.kind == "f":
        return json_encode.array_json(array.astype(np.float32))
    return json.dumps(array.tolist())


def _output_array(value, dtype: str | None) -> np.ndarray:
    """An output of a REST answer as the array of its signature's type (float32 if other)."""
    name = dtype if dtype in _REST_READ else "DT_FLOAT"
    if isinstance(value, json_fast.NumericSpan):
        array = value.to_array(BY_NAME[name])
        if array is not None:
            return array
        value = value.to_python()
    return np.asarray(value, dtype=_REST_READ[name])


class Client:
    """gRPC or REST client for the genkeras signatures (any TF Serving model via `predict`)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        protocol: str = "grpc",
        timeout: float = 60.0,
        max_message_bytes: int = 64 * 1024 * 1024,
    ):
        if protocol not in ("grpc", "rest"):
            raise ValueError("protocol must be 'grpc' or 'rest'")
        self.host, self.protocol, self.timeout = host, protocol, timeout
        self.port = port if port is not None else (8500 if protocol == "grpc" else 8501)
        self._local = threading.local()
        self._metadata: dict = {}
        if protocol == "grpc":
            import grpc
            from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

            self._grpc = grpc
            self._channel = grpc.insecure_channel(
                f"{host}:{self.port}",
                options=[
                    ("grpc.max_receive_message_length", max_message_bytes),
                    ("grpc.max_send_message_length", max_message_bytes),
                ],
            )
            self._predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
            self._model_stub = model_service_pb2_grpc.ModelServiceStub(self._channel)

    # -- the signatures -------------------------------------------------------------------------
    def encode(self, model, images, output="z", **spec):
        return self.predict(model, "encode", {"images": images}, **spec)[output]

    def decode(self, model, z, labels=None, **spec):
        inputs = {"z": z} if labels is None else {"z": z, "labels": np.asarray(labels, np.int32)}
        return self.predict(model, "decode", inputs, **spec)["images"]

    def reconstruct(self, model, images, **spec):
        return self.predict(model, "reconstruct", {"images": images}, **spec)["images"]

    def denoise(self, model, images, **spec):
        return self.predict(model, "denoise", {"images": images}, **spec)["images"]

    def log_prob(self, model, images, **spec):
        return self.predict(model, "log_prob", {"images": images}, **spec)["log_prob"]

    def sample(self, model, num: int, seed: int = 0, labels=None, temperature=None, **spec):
        inputs = {"num": np.int32(num), "seed": np.int32(seed)}
        if labels is not None:
            inputs["labels"] = np.asarray(labels, np.int32)
        if temperature is not None:
            inputs["temperature"] = np.float32(temperature)
        return self.predict(model, "sample", inputs, **spec)["images"]

    # -- generic --------------------------------------------------------------------------------
    def predict(self, model: str, signature: str, inputs: dict, version=None, label=None) -> dict:
        """Runs `signature` of `model`; returns every output as a numpy array."""
        inputs = {
            k: np.asarray(v, np.float32) if np.asarray(v).dtype == np.float64 else np.asarray(v)
            for k, v in inputs.items()
        }
        if self.protocol == "grpc":
            return self._grpc_predict(model, signature, inputs, version, label)
        return self._rest_predict(model, signature, inputs, version, label)

    def status(self, model: str, version=None, label=None) -> dict:
        if self.protocol == "grpc":
            from google.protobuf import json_format
            from tensorflow_serving.apis import get_model_status_pb2

            request = get_model_status_pb2.GetModelStatusRequest()
            self._fill_spec(request.model_spec, model, version, label)
            response = self._call(self._model_stub.GetModelStatus, request)
            return json_format.MessageToDict(response, always_print_fields_with_no_presence=True)
        return self._rest("GET", self._path(model, version, label))

    def metadata(self, model: str, version=None, label=None) -> dict:
        """The signature_def map as JSON (REST's metadata answer)."""
        if self.protocol == "grpc":
            from google.protobuf import json_format
            from tensorflow_serving.apis import get_model_metadata_pb2

            request = get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"]
            )
            self._fill_spec(request.model_spec, model, version, label)
            response = self._call(self._predict_stub.GetModelMetadata, request)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signature_map)
            options = dict(
                always_print_fields_with_no_presence=True, preserving_proto_field_name=True
            )
            return {
                "model_spec": json_format.MessageToDict(response.model_spec, **options),
                "metadata": {"signature_def": json_format.MessageToDict(signature_map, **options)},
            }
        return self._rest("GET", self._path(model, version, label) + "/metadata")

    def close(self) -> None:
        if self.protocol == "grpc":
            self._channel.close()
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- gRPC -----------------------------------------------------------------------------------
    @staticmethod
    def _fill_spec(model_spec, model, version, label):
        model_spec.name = model
        if version is not None:
            model_spec.version.value = int(version)
        if label is not None:
            model_spec.version_label = label

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except self._grpc.RpcError as error:
            raise ServingClientError(error.code().name, error.details()) from None

    def _grpc_predict(self, model, signature, inputs, version, label):
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._fill_spec(request.model_spec, model, version, label)
        request.model_spec.signature_name = signature
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(array_to_proto(value))
        response = self._call(self._predict_stub.Predict, request)
        return {key: proto_to_array(value) for key, value in response.outputs.items()}

    # -- REST -----------------------------------------------------------------------------------
    @staticmethod
    def _path(model, version=None, label=None):
        path = f"/v1/models/{model}"
        if version is not None:
            path += f"/versions/{int(version)}"
        elif label is not None:
            path += f"/labels/{label}"
        return path

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def _rest_raw(self, method: str, path: str, body: str | None = None):
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request(
                    method,
                    path,
                    body=body.encode() if body is not None else None,
                    headers={"Content-Type": "application/json"},
                )
                response = connection.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError, OSError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _rest(self, method: str, path: str, body: str | None = None, arrays: bool = False):
        status, data = self._rest_raw(method, path, body)
        try:
            doc = ((json_fast.loads if arrays else json.loads)(data)) if data else {}
        except ValueError:
            doc = {"error": data.decode(errors="replace")}
        if status != 200:
            raise ServingClientError(
                _CODES.get(status, "UNKNOWN"), doc.get("error", str(doc)), status
            )
        return doc

    def _output_dtypes(self, model, signature, version, label) -> dict:
        key = (model, signature, version, label)
        if key not in self._metadata:
            meta = self.metadata(model, version, label)
            signatures = meta["metadata"]["signature_def"]["signature_def"]
            name = signature or "serving_default"
            if name not in signatures:
                raise ServingClientError(
                    "FAILED_PRECONDITION", f'Serving signature key "{name}" not found.'
                )
            self._metadata[key] = {k: v["dtype"] for k, v in signatures[name]["outputs"].items()}
        return self._metadata[key]

    def _rest_predict(self, model, signature, inputs, version, label):
        body = (
            '{"signature_name": '
            + json.dumps(signature)
            + ', "inputs": {'
            + ", ".join(f"{json.dumps(k)}: {_json_value(v)}" for k, v in inputs.items())
            + "}}"
        )
        path = self._path(model, version, label) + ":predict"
        outputs = self._rest("POST", path, body, arrays=True)["outputs"]
        output_dtypes = self._output_dtypes(model, signature, version, label)
        if not (isinstance(outputs, dict) and set(outputs) == set(output_dtypes)):
            outputs = {next(iter(output_dtypes)): outputs}
        return {k: _output_array(v, output_dtypes.get(k)) for k, v in outputs.items()}

    # -- TF Serving's Classify ------------------------------------------------------------------
    def classify(
        self, model, examples, signature="classify", feature="images", context=None, **spec
    ):
        """Labels and scores per example through TF Serving's Classify (gRPC) or `:classify`.

        `examples`: images (a numeric array, each row's values flattened into the float feature
        `feature`), or `tf.Example`s as dicts `{feature: value or values}` (floats go as a float
        list, integers and bools as int64, str and bytes as bytes); `context`: a dict of the
        features all examples share; `**spec`: `version=` or `label=`. Returns `(labels, scores)`,
        str [N, C] and float32 [N, C] (the cvae's "0".."9" and p(y | x)).
        """
        if not isinstance(examples, (list, tuple)):
            rows = np.asarray(examples)
            examples = [{feature: row} for row in rows.reshape(len(rows), -1)]
        examples = [_features(e) for e in examples]
        if self.protocol == "grpc":
            from tensorflow_serving.apis import classification_pb2

            request = classification_pb2.ClassificationRequest()
            self._fill_spec(request.model_spec, model, spec.get("version"), spec.get("label"))
            request.model_spec.signature_name = signature
            target = request.input.example_list
            if context is not None:
                target = request.input.example_list_with_context
                _fill_example(target.context, _features(context))
            for example in examples:
                _fill_example(target.examples.add(), example)
            result = self._call(self._predict_stub.Classify, request).result
            rows = [[(c.label, c.score) for c in r.classes] for r in result.classifications]
        else:
            body = {"signature_name": signature, "examples": [_json(e) for e in examples]}
            if context is not None:
                body["context"] = _json(_features(context))
            path = self._path(model, **spec) + ":classify"
            rows = self._rest("POST", path, json.dumps(body))["results"]
        labels = np.array([[str(name) for name, _ in row] for row in rows], dtype=str)
        scores = np.array([[score for _, score in row] for row in rows], dtype=np.float32)
        return labels.reshape(len(rows), -1), scores.reshape(len(rows), -1)


def _features(example: dict) -> dict:
    """`{name: (kind, values)}` of a tf.Example given as a dict; kind float, int64 or bytes."""
    out = {}
    for name, value in example.items():
        texts = value if isinstance(value, (list, tuple)) else [value]
        if texts and all(isinstance(v, (str, bytes)) for v in texts):
            out[name] = "bytes", [v.encode() if isinstance(v, str) else v for v in texts]
            continue
        array = np.asarray(value).ravel()
        if array.dtype.kind == "f":  # float32 values, written as the float64 equal to them
            out[name] = "float", array.astype(np.float32).astype(np.float64).tolist()
        else:
            out[name] = "int64", array.astype(np.int64).tolist()
    return out


def _fill_example(example, features: dict) -> None:
    for name, (kind, values) in features.items():
        getattr(example.features.feature[name], f"{kind}_list").value.extend(values)


def _json(features: dict) -> dict:
    """A tf.Example as REST's `examples` hold it (floats keep their `.0`; bytes as b64)."""
    import base64

    return {
        name: [{"b64": base64.b64encode(v).decode()} for v in values] if kind == "bytes" else values
        for name, (kind, values) in features.items()
    }


_CODES = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
