"""Protocol buffer classes the server reads, from tensorflow-serving-api where it ships them.

The `tensorflow-serving-api` wheel carries `model_server_config_pb2` but not
`monitoring_config_pb2` (MonitoringConfig) nor `session_bundle_config_pb2`
(BatchingParameters). Those two are rebuilt here from their `.proto` definitions in
tensorflow/serving, same package (`tensorflow.serving`), same message names, same field
numbers and types, in a private descriptor pool so they can never clash with a future wheel
that ships them. BatchingParameters keeps the fields every TF Serving release has
(numbers 1 to 7); a text proto written with them is read identically by the real server.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

_F = descriptor_pb2.FieldDescriptorProto


def _field(message, name, number, type_, type_name=None, repeated=False):
    field = message.field.add()
    field.name = name
    field.number = number
    field.type = type_
    field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        field.type_name = type_name
    return field


def _build():
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    monitoring = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    prometheus = monitoring.message_type.add(name="PrometheusConfig")
    _field(prometheus, "enable", 1, _F.TYPE_BOOL)
    _field(prometheus, "path", 2, _F.TYPE_STRING)
    config = monitoring.message_type.add(name="MonitoringConfig")
    _field(config, "prometheus_config", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig")
    pool.Add(monitoring)

    bundle = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    batching = bundle.message_type.add(name="BatchingParameters")
    for name, number in (
        ("max_batch_size", 1),
        ("batch_timeout_micros", 2),
        ("max_enqueued_batches", 3),
        ("num_batch_threads", 4),
    ):
        _field(batching, name, number, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    _field(batching, "thread_pool_name", 5, _F.TYPE_MESSAGE, ".google.protobuf.StringValue")
    _field(batching, "allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True)
    _field(batching, "pad_variable_length_inputs", 7, _F.TYPE_BOOL)
    pool.Add(bundle)

    def get(name):
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))

    return (
        get("tensorflow.serving.MonitoringConfig"),
        get("tensorflow.serving.PrometheusConfig"),
        get("tensorflow.serving.BatchingParameters"),
    )


try:  # a wheel that ships them wins
    from tensorflow_serving.config.monitoring_config_pb2 import (  # type: ignore
        MonitoringConfig,
        PrometheusConfig,
    )
    from tensorflow_serving.servables.tensorflow.session_bundle_config_pb2 import (  # type: ignore
        BatchingParameters,
    )
except ImportError:
    MonitoringConfig, PrometheusConfig, BatchingParameters = _build()

__all__ = ["BatchingParameters", "MonitoringConfig", "PrometheusConfig"]
