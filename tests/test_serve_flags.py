"""TF Serving's command line (`tensorflow_serving/model_servers/main.cc`) on `genkeras serve`
(issue 30, item 4): the flags TF Serving's own test harness starts every server with
(`--grpc_socket_path`, `--grpc_channel_arguments`, `--rest_api_timeout_in_ms`) work, the
flags that cannot apply exit 2 with one line before TensorFlow loads, and `--version` prints.

One short-lived server serves the shipped pca over a Unix socket and a TCP port.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import ROOT, free_port, genkeras_server, run_python
from conftest import serve_to_end as serve

from genkeras.commands import serve_flags
from genkeras.serving import health
from genkeras.serving.grpc_options import parse_channel_arguments, server_options
from genkeras.serving.tf_runtime import thread_counts

PCA = ROOT / "savedmodels" / "pca"
CHANNEL_ARGUMENTS = "grpc.max_connection_age_ms=2000,grpc.so_reuseaddr=1"


# -- without a server --------------------------------------------------------------------------


def test_channel_arguments_are_read_as_tf_serving_reads_them():
    assert parse_channel_arguments("") == []
    assert parse_channel_arguments(CHANNEL_ARGUMENTS) == [
        ("grpc.max_connection_age_ms", 2000),
        ("grpc.so_reuseaddr", 1),
    ]
    # absl::SimpleAtoi into an int32: spaces and a sign pass; out of range stays a string
    assert parse_channel_arguments("a= -7 ,b=2147483648,c=x,d=,e=1_0") == [
        ("a", -7),
        ("b", "2147483648"),
        ("c", "x"),
        ("d", ""),
        ("e", "1_0"),
    ]
    for bad in ("a", "a=1,", "=1", "a=1=2", "a=1,,b=2"):
        with pytest.raises(ValueError, match="--grpc_channel_arguments") as error:
            parse_channel_arguments(bad)
        assert "\n" not in str(error.value)
    # the last of repeated keys wins, over the server's own options too
    own = [("grpc.max_receive_message_length", 64), ("grpc.so_reuseport", 0)]
    merged = server_options(own, parse_channel_arguments("grpc.so_reuseport=1,x=1,x=2"))
    assert merged == [
        ("grpc.max_receive_message_length", 64),
        ("grpc.so_reuseport", 1),
        ("x", 2),
    ]


def test_thread_flags_are_picked_as_server_cc_picks_them():
    assert thread_counts(0, 0, 0) == (0, 0)
    assert thread_counts(4, 0, 0) == (4, 4)
    assert thread_counts(4, 2, 0) == (2, 0)  # intra or inter given: the session's is unused
    assert thread_counts(0, 2, 3) == (2, 3)
    with pytest.raises(ValueError, match="not all three"):
        thread_counts(4, 2, 3)


def test_health_messages_are_read_and_written_by_hand():
    assert health.service_name(b"") == ""
    assert health.service_name(b"\n\x0cModelService") == "ModelService"
    assert health.service_name(b"\x10\x05\n\x01x") == "x"  # an unknown field first
    assert health.response(health.SERVING) == b"\x08\x01"
    with pytest.raises(ValueError):
        health.service_name(b"\n\x05ab")


def test_every_flag_of_main_cc_has_a_decision():
    """The flags of TF Serving's main.cc (master, 2026), each defined by `genkeras serve`."""
    from genkeras.commands.serve import build_parser

    main_cc = """port grpc_socket_path rest_api_port rest_api_num_threads rest_api_timeout_in_ms
        rest_api_enable_cors_support enable_batching allow_version_labels_for_unavailable_models
        batching_parameters_file enable_per_model_batching_parameters model_config_file
        model_config_file_poll_wait_seconds model_name model_base_path num_load_threads
        num_unload_threads max_num_load_retries load_retry_interval_micros
        file_system_poll_wait_seconds flush_filesystem_caches tensorflow_session_parallelism
        tensorflow_session_config_file tensorflow_intra_op_parallelism
        tensorflow_inter_op_parallelism use_alts_credentials ssl_config_file platform_config_file
        per_process_gpu_memory_fraction saved_model_tags grpc_channel_arguments grpc_max_threads
        enable_model_warmup num_request_iterations_for_warmup version monitoring_config_file
        remove_unused_fields_from_bundle_metagraph prefer_tflite_model num_tflite_pools
        num_tflite_interpreters_per_pool enable_signature_method_name_check
        xla_cpu_compilation_enabled xla_gpu_compilation_enabled enable_profiler
        thread_pool_factory_config_file mixed_precision skip_initialize_tpu
        enable_grpc_healthcheck_service enable_serialization_as_tensor_content""".split()
    defined = {action.dest for action in build_parser()._actions}
    assert set(main_cc) <= defined, sorted(set(main_cc) - defined)
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in main_cc if not re.search(rf"`--{name}[`=]", readme)]
    assert not missing, missing


@pytest.mark.slow
def test_flags_that_cannot_work_exit_2_with_one_line_before_tensorflow_loads(tmp_path):
    """Each refused flag, a bad channel argument and the other value errors: exit status 2 and
    one line naming the flag, without importing TensorFlow (one process runs them all)."""
    cases = [
        (["--ssl_config_file=/etc/ssl.conf"], "--ssl_config_file", "SSL/TLS"),
        (["--use_alts_credentials"], "--use_alts_credentials", "ALTS"),
        (["--platform_config_file", "p.config"], "--platform_config_file", "PlatformConfigMap"),
        (["--tensorflow_session_config_file=s"], "--tensorflow_session_config_file", "Session"),
        (["--thread_pool_factory_config_file=t"], "--thread_pool_factory_config_file", "C++"),
        (["--prefer_tflite_model=true"], "--prefer_tflite_model=true", "TF Lite"),
        (["--use_tflite_model"], "--use_tflite_model=true", "TF Lite"),
        (["--num_tflite_pools=4"], "--num_tflite_pools", "TF Lite"),
        (["--num_tflite_interpreters_per_pool=2"], "--num_tflite_interpreters_per_pool", "Lite"),
        (["--enable_profiler"], "--enable_profiler=true", "ProfilerService"),
        (["--mixed_precision=bfloat16"], "--mixed_precision", "bfloat16"),
        (["--skip_initialize_tpu=true"], "--skip_initialize_tpu", "TPU"),
        (["--saved_model_tags=serve,tpu"], "--saved_model_tags", "serve only"),
        (["--max_num_load_retries=5"], "--max_num_load_retries", "timer"),
        (["--num_request_iterations_for_warmup=3"], "--num_request_iterations", "once"),
        (["--grpc_channel_arguments=grpc.x"], "--grpc_channel_arguments", "no '='"),
        (["--grpc_channel_arguments", "a=1,,b=2"], "--grpc_channel_arguments", "empty"),
        (["--model_config_file=gs://bucket/models.config"], "--model_config_file", "remote"),
        (["--batching_parameters_file=b.config"], "--batching_parameters_file", "enable_batch"),
        (["--num_load_threads=-1"], "--num_load_threads", "0 or more"),
        (["--per_process_gpu_memory_fraction=2"], "--per_process_gpu_memory_fraction", "0 to"),
        (
            [f"--tensorflow_{part}_parallelism=2" for part in ("session", "intra_op", "inter_op")],
            "--tensorflow_session_parallelism",
            "not all three",
        ),
    ]
    result = run_python(
        """
        import contextlib, io, json, sys
        from genkeras.commands import serve
        out = []
        for args in json.loads(sys.argv[1]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = serve.main(["--model_base_path", sys.argv[2], *args])
            out.append([code, err.getvalue()])
        out.append("tensorflow" in sys.modules)
        print(json.dumps(out))
        """,
        json.dumps([args for args, _, _ in cases]),
        PCA,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    *answers, tensorflow_loaded = json.loads(result.stdout.strip().splitlines()[-1])
    for (args, flag, why), (code, stderr) in zip(cases, answers, strict=True):
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1, (args, code, lines)
        assert flag in lines[0], (args, lines)
        assert why in lines[0], (args, lines)
    assert not tensorflow_loaded


@pytest.mark.slow
def test_thread_and_gpu_memory_flags_reach_tensorflow():
    result = run_python(
        """
        import tensorflow as tf
        from tensorflow.python.eager import context
        from genkeras.serving import tf_runtime
        tf_runtime.configure(0, 1, 2, 0.25)
        assert tf.reduce_sum(tf.ones([4])).numpy() == 4  # the runtime starts with them
        fraction = context.context().config.gpu_options.per_process_gpu_memory_fraction
        print(tf.config.threading.get_intra_op_parallelism_threads(),
              tf.config.threading.get_inter_op_parallelism_threads(), round(fraction, 6))
        try:
            tf_runtime.configure(0, 3, 0, 0)
        except ValueError as error:
            print("late:", error)
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first, late = result.stdout.strip().splitlines()[-2:]
    assert first == "1 2 0.25"
    assert late.startswith("late: cannot set TensorFlow's threads")


@pytest.mark.slow
@pytest.mark.parametrize("what", ["missing folder", "regular file"])
def test_a_socket_path_that_cannot_work_exits_2_before_loading(tmp_path, what):
    path = tmp_path / "nowhere" / "sock" if what == "missing folder" else tmp_path / "file"
    if what == "regular file":
        path.write_text("not a socket")
    result = serve(
        "--model_name", "pca", "--model_base_path", PCA, "--port", 0, "--rest_api_port", 0,
        f"--grpc_socket_path={path}",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--grpc_socket_path {path}" in lines[0], lines
    assert ("does not exist" if what == "missing folder" else "not a socket") in lines[0]
    assert "Loading servable" not in result.stderr


@pytest.mark.slow
def test_version_prints_two_lines_and_exits_0():
    result = serve("--version")
    assert result.returncode == 0, result.stderr[-2000:]
    first, second = result.stdout.strip().splitlines()
    assert first.startswith("TensorFlow ModelServer: genkeras ")
    assert second.startswith("TensorFlow Library: 2.")


# -- one server: TF Serving's harness flags, the socket, and the implemented flags -------------


@pytest.fixture(scope="module")
def server():
    if not PCA.exists():
        pytest.skip("savedmodels/pca is not exported")
    work = Path(tempfile.mkdtemp(prefix="gk-flags-", dir="/tmp"))  # short: sun_path is 108 bytes
    info = {"grpc": free_port(), "rest": free_port(), "socket": work / "sock", "work": work}
    args = [
        # as TF Serving's tensorflow_model_server_test_base.py starts its servers
        f"--port={info['grpc']}", f"--rest_api_port={info['rest']}",
        "--rest_api_timeout_in_ms=5000", f"--grpc_socket_path={info['socket']}",
        "--model_name=pca", f"--model_base_path={PCA}",
        f"--grpc_channel_arguments={CHANNEL_ARGUMENTS}",
        # implemented here
        "--rest_api_enable_cors_support", "--enable_grpc_healthcheck_service=true",
        "--enable_serialization_as_tensor_content", "--enable_model_warmup=false",
        "--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism", "2",
        # accepted: values that ask for what genkeras does anyway
        "--num_load_threads=2", "--flush_filesystem_caches=false", "--max_num_load_retries=0",
        "--load_retry_interval_micros=1000", "--saved_model_tags=serve", "--enable_profiler=false",
        "--xla_cpu_compilation_enabled", "--remove_unused_fields_from_bundle_metagraph=true",
    ]  # fmt: skip

    def ready():
        return "genkeras serve: ready" in (work / "server.log").read_text()

    try:
        with genkeras_server(args, work, ready):
            yield info
        assert not info["socket"].exists()  # gRPC removes its socket when it stops
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stubs(target: str):
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(target)
    return (
        channel,
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )


def predict_and_status(target: str):
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

    channel, prediction, model = stubs(target)
    with channel:
        status = model.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "pca"}), timeout=60
        )
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = "pca", "decode"
        z = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)
        request.inputs["z"].CopyFrom(tf.make_tensor_proto(z))
        answer = prediction.Predict(request, timeout=60)
    return status, answer


def test_grpc_answers_over_the_unix_socket_and_the_port(server):
    answers = {}
    for where, target in (("socket", f"unix:{server['socket']}"), ("port", "")):
        target = target or f"127.0.0.1:{server['grpc']}"
        status, answer = predict_and_status(target)
        (version,) = status.model_version_status
        assert (version.version, version.state) == (1, 30)  # AVAILABLE
        images = answer.outputs["images"]
        # --enable_serialization_as_tensor_content: the numbers come as bytes
        assert images.tensor_content and not images.float_val
        assert [d.size for d in images.tensor_shape.dim] == [2, 28, 28, 1]
        answers[where] = np.frombuffer(images.tensor_content, "<f4")
    np.testing.assert_array_equal(answers["socket"], answers["port"])
    log = (server["work"] / "server.log").read_text()
    assert f"Running gRPC ModelServer at UNIX socket {server['socket']}" in log
    assert "TensorFlow threads: intra-op 1, inter-op 2" in log


def test_channel_arguments_reach_the_server(server):
    """grpc.max_connection_age_ms=2000: the server ends an idle client's connection (GOAWAY)
    after about 2 s, and the channel falls back to IDLE; without it the connection stays."""
    channel, _, model = stubs(f"unix:{server['socket']}")
    states, idle = [], threading.Event()

    def watch(state):
        states.append(state)
        if state == grpc.ChannelConnectivity.IDLE and grpc.ChannelConnectivity.READY in states:
            idle.set()

    with channel:
        from tensorflow_serving.apis import get_model_status_pb2

        model.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "pca"}), timeout=60
        )
        started = time.monotonic()
        channel.subscribe(watch)
        assert idle.wait(20), states
        assert time.monotonic() - started > 1, states


def test_health_service_answers_as_grpc_default_one(server):
    with grpc.insecure_channel(f"unix:{server['socket']}") as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        for name in ("", "ModelService", "PredictionService"):
            assert check(b"\n" + bytes([len(name)]) + name.encode(), timeout=30) == b"\x08\x01"
        with pytest.raises(grpc.RpcError) as error:
            check(b"\n\x07unknown", timeout=30)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_rest_answers_carry_tf_serving_cors_headers(server):
    connection = http.client.HTTPConnection("127.0.0.1", server["rest"], timeout=60)
    try:
        connection.request("GET", "/v1/models/pca")
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 200
    assert response.getheader("Access-Control-Allow-Origin") == "*"
    assert response.getheader("Access-Control-Allow-Methods") == "POST, GET"
    assert response.getheader("Access-Control-Allow-Headers") == "Content-Type"


def test_the_flag_table_names_each_flag_once():
    tables = [
        set(serve_flags.IMPLEMENTED),
        set(serve_flags.IMPLEMENTED_BOOLS),
        set(serve_flags.ACCEPTED),
        set(serve_flags.REFUSED),
    ]
    names = [name for table in tables for name in table]
    assert len(names) == len(set(names))
