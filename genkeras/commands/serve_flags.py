"""The rest of TF Serving's command line for `genkeras serve`: every flag of
`tensorflow_serving/model_servers/main.cc` that `serve.py`'s parser does not define itself.

Each flag is implemented (a `ServerOptions` field), accepted where every value it takes asks
for what genkeras does anyway (`ACCEPTED`), or refused (`REFUSED`): a value genkeras cannot
honour exits 2 with one line naming the flag and why, before TensorFlow loads. Flags are
`--flag=value` or `--flag value`; booleans, as TF Serving's, `--flag`, `--flag=true` or
`--flag=false`. README.md ("Which TF Serving calls are implemented") lists them all.
"""

from __future__ import annotations

import argparse
from importlib import metadata

from genkeras.serving.config import REMOTE_PATH
from genkeras.serving.grpc_options import parse_channel_arguments
from genkeras.serving.tf_runtime import thread_counts


def boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_bool(parser, name, help=None, default=False):  # noqa: A002
    """A boolean flag TF Serving's way: `--name`, `--name=true` or `--name=false`."""
    parser.add_argument(name, nargs="?", const=True, default=default, type=boolean, help=help)


# name -> (type, help): implemented, as ServerOptions fields of the same name.
IMPLEMENTED = {
    "grpc_socket_path": (str, "serve gRPC on this Unix socket as well (or alone with --port 0)"),
    "grpc_channel_arguments": (
        str,
        "KEY=VALUE,... gRPC server options, e.g. grpc.max_connection_age_ms=2000",
    ),
    "tensorflow_session_parallelism": (int, "TensorFlow's intra- and inter-op threads (0: auto)"),
    "tensorflow_intra_op_parallelism": (int, "threads within one op (0: auto)"),
    "tensorflow_inter_op_parallelism": (int, "ops run at once (0: auto)"),
    "per_process_gpu_memory_fraction": (float, "share of each GPU's memory to take (0: auto)"),
}
IMPLEMENTED_BOOLS = {
    "rest_api_enable_cors_support": "CORS headers on every /v1/ answer",
    "enable_grpc_healthcheck_service": "serve grpc.health.v1.Health on the gRPC port",
    "enable_serialization_as_tensor_content": "Predict answers numbers in tensor_content",
}

# name -> (type, what genkeras does, whatever the value)
ACCEPTED = {
    "num_load_threads": (int, "versions load one at a time here"),
    "num_unload_threads": (int, "an unload only drops references here"),
    "load_retry_interval_micros": (int, "unused: a failed load is not retried on a timer"),
    "flush_filesystem_caches": (boolean, "local files: TensorFlow keeps no cache to flush"),
    "remove_unused_fields_from_bundle_metagraph": (boolean, "only changes memory use"),
    "xla_cpu_compilation_enabled": (boolean, "XLA JIT stays available either way"),
    "xla_gpu_compilation_enabled": (boolean, "XLA JIT stays available either way"),
}


def _unset(value) -> bool:
    return not value


def _never(value) -> bool:
    return False


# name -> (type, whether genkeras honours a value, why not). Values are checked when given;
# `_unset` accepts false or empty (TF Serving's defaults), `_never` no value at all.
REFUSED = {
    "max_num_load_retries": (
        int,
        lambda v: v == 0,
        "a failed load is not retried on a timer here (it loads again when its files "
        "change); only 0 is accepted",
    ),
    "num_request_iterations_for_warmup": (
        int,
        lambda v: v <= 1,
        "each warm-up record is replayed once here; give 1 or less",
    ),
    "saved_model_tags": (
        str,
        lambda v: set(v.split(",")) == {"serve"},
        "genkeras loads the MetaGraph tagged serve only; give serve",
    ),
    "ssl_config_file": (
        str,
        _unset,
        "gRPC over SSL/TLS is not implemented (plaintext, on 127.0.0.1 by default); "
        "put a TLS proxy in front",
    ),
    "use_alts_credentials": (boolean, _unset, "ALTS credentials are not implemented"),
    "platform_config_file": (
        str,
        _unset,
        "a PlatformConfigMap configures TF Serving's C++ source adapters; genkeras has the "
        "tensorflow platform only, set up by flags",
    ),
    "tensorflow_session_config_file": (
        str,
        _unset,
        "a TF1 Session ConfigProto; SavedModels run as TF2 functions here, with no session "
        "(threads and GPU memory have flags)",
    ),
    "thread_pool_factory_config_file": (
        str,
        _unset,
        "names a C++ ThreadPoolFactory of TF Serving's binary; requests run on genkeras's "
        "own threads (--grpc_max_threads, --rest_api_num_threads)",
    ),
    "prefer_tflite_model": (boolean, _unset, "TF Lite is not served, only SavedModel graphs"),
    "use_tflite_model": (boolean, _unset, "TF Lite is not served, only SavedModel graphs"),
    "num_tflite_pools": (int, _never, "TF Lite is not served, only SavedModel graphs"),
    "num_tflite_interpreters_per_pool": (
        int,
        _never,
        "TF Lite is not served, only SavedModel graphs",
    ),
    "enable_profiler": (
        boolean,
        _unset,
        "no TensorFlow ProfilerService on the gRPC port (profile with tf.profiler instead)",
    ),
    "mixed_precision": (
        str,
        _unset,
        "the bfloat16 rewrite goes through a TF1 session's Grappler options (oneDNN); "
        "SavedModels run as exported here",
    ),
    "skip_initialize_tpu": (boolean, _unset, "TPU only; no TPU is used here"),
}


def add_flags(parser: argparse.ArgumentParser, defaults) -> None:
    """Adds the flags of this module to `serve.py`'s parser (`defaults`: a `ServerOptions`)."""
    for name, (kind, help_text) in IMPLEMENTED.items():
        parser.add_argument(f"--{name}", type=kind, default=getattr(defaults, name), help=help_text)
    for name, help_text in IMPLEMENTED_BOOLS.items():
        add_bool(parser, f"--{name}", help_text)
    add_bool(parser, "--enable_model_warmup", "replay assets.extra warm-up requests", True)
    add_bool(parser, "--version", "print the versions and exit")
    for name, (kind, what) in ACCEPTED.items():
        help_text = f"accepted for TF Serving's command lines: {what}"
        if kind is boolean:
            add_bool(parser, f"--{name}", help_text, None)
        else:
            parser.add_argument(f"--{name}", type=kind, help=help_text)
    for name, (kind, honoured, why) in REFUSED.items():
        when = {_unset: " unless false" if kind is boolean else " unless empty", _never: ""}
        help_text = f"refused{when.get(honoured, ' for some values')}: {why}"
        if kind is boolean:
            add_bool(parser, f"--{name}", help_text, None)
        else:
            parser.add_argument(f"--{name}", type=kind, help=help_text)


def check(args: dict) -> str | None:
    """The first flag whose value cannot work here, as one line; None when all can."""
    for name, (_, honoured, why) in REFUSED.items():
        value = args[name]
        if value is not None and not honoured(value):
            shown = str(value).lower() if isinstance(value, bool) else value
            return f"--{name}={shown} is not supported: {why}"
    for name in (
        "model_base_path",
        "model_config_file",
        "batching_parameters_file",
        "monitoring_config_file",
        "grpc_socket_path",
    ):
        if args[name] and REMOTE_PATH.match(str(args[name])):
            return (
                f"--{name}={args[name]} is not supported: remote file systems are not "
                "read here, only local paths"
            )
    if args["batching_parameters_file"] and not args["enable_batching"]:
        return "--batching_parameters_file is set without --enable_batching (as TF Serving)"
    for name in ("num_load_threads", "num_unload_threads"):
        if args[name] is not None and args[name] < 0:
            return f"--{name} {args[name]} must be 0 or more"
    threads = [f"tensorflow_{part}_parallelism" for part in ("session", "intra_op", "inter_op")]
    for name in threads:
        if args[name] < 0:
            return f"--{name} {args[name]} must be 0 or more"
    fraction = args["per_process_gpu_memory_fraction"]
    if not 0 <= fraction <= 1:
        return f"--per_process_gpu_memory_fraction {fraction} must be from 0 to 1"
    try:
        thread_counts(*(args[name] for name in threads))
        parse_channel_arguments(args["grpc_channel_arguments"])
    except ValueError as error:
        return str(error)
    return None


def settle(args: dict) -> dict:
    """`args` less the flags `ServerOptions` has no field for (`--enable_model_warmup=false`
    becomes `no_warmup`)."""
    if not args.pop("enable_model_warmup"):
        args["no_warmup"] = True
    for name in (*ACCEPTED, *REFUSED, "version"):
        args.pop(name)
    return args


def version_text() -> str:
    """What `--version` prints, in TF Serving's two lines (without importing TensorFlow)."""
    import genkeras

    def installed(*names: str) -> str:
        for name in names:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return "not installed"

    return (
        f"TensorFlow ModelServer: genkeras {genkeras.__version__} (TF Serving's APIs of "
        f"tensorflow-serving-api {installed('tensorflow-serving-api')})\n"
        f"TensorFlow Library: {installed('tensorflow', 'tensorflow-cpu', 'tf-nightly')}"
    )


__all__ = ["ACCEPTED", "IMPLEMENTED", "REFUSED", "add_flags", "check", "settle", "version_text"]
