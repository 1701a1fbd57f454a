"""README.md's examples, run the way a new user would run them, so that the README cannot drift.

* Every ```python block runs in a fresh Python process and must exit 0. The serving `Client`
  block needs a server: it runs against a live `genkeras serve`, once over gRPC and once over
  REST (the `protocol="rest"` its comment names).
* The curl lines under "REST (curl)" run in bash against that server; each must exit 0 with an
  HTTP 200 (curl is wrapped with `--fail`) and answer JSON without an "error" key.
* The `saved_model_cli` lines run in bash on the shipped savedmodels/ and must exit 0.
* Every `python -m genkeras...` module the README names exists, every `genkeras COMMAND` is in
  `genkeras.cli.COMMANDS`, and every `genkeras/...` path and `genkeras.a.b` name it mentions
  exists (the package was reorganised once; stale paths are the README's usual drift).

The README's examples use TF Serving's default ports, 8500 (gRPC) and 8501 (REST). The server
here listens on free loopback ports, and the tests rewrite only those two numbers in the
examples (`with_ports`); nothing else in an example is changed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, free_port, genkeras_server, run_python

README = (ROOT / "README.md").read_text()
# A fenced block: its indentation, its language and its body (indented fences too, as in lists).
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.M | re.S)
HEADING = re.compile(r"^#{2,3} (.+)$", re.M)
CONFIG = ROOT / "serving" / "models.config"
# curl as `curl -sSf`: an HTTP error status (>= 400) makes the command fail; bounded in time.
BASH_PREAMBLE = """set -euo pipefail
curl() { command curl --silent --show-error --fail --max-time 120 "$@"; }
"""


def fenced_blocks(language: str) -> list[tuple[str, str]]:
    """(heading above the block, dedented body) for every ```LANGUAGE block of the README."""
    blocks = []
    for match in FENCE.finditer(README):
        if match.group(2) == language:
            headings = HEADING.findall(README, 0, match.start())
            body = "\n".join(line[len(match.group(1)) :] for line in match.group(3).splitlines())
            blocks.append((headings[-1] if headings else "top", body))
    return blocks


def bash_block_under(heading: str) -> str:
    """The first ```bash block after the README heading `heading` (e.g. "### REST (curl)")."""
    start = README.index(f"\n{heading}\n")
    match = next(m for m in FENCE.finditer(README, start) if m.group(2) == "bash")
    return match.group(3)


def shell_commands(block: str) -> list[str]:
    """The commands of a bash block: `\\` continuations joined, blank and comment lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def with_ports(text: str, grpc_port: int, rest_port: int) -> str:
    """The README's default ports 8500 (gRPC) and 8501 (REST) replaced by the test server's."""
    return re.sub(r"\b8501\b", str(rest_port), re.sub(r"\b8500\b", str(grpc_port), text))


def run_bash(
    commands: list[str], cwd: Path, timeout: int = 180
) -> list[subprocess.CompletedProcess]:
    """Runs each command in its own bash (after the block's `VAR=value` lines), in order, in
    `cwd`, with this interpreter's bin/ (python, saved_model_cli) first on PATH."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    assignments, results = [], []
    for command in commands:
        if re.fullmatch(r"\w+=\S+", command.strip()):
            assignments.append(command)
            continue
        script = BASH_PREAMBLE + "\n".join(assignments) + "\n" + command + "\n"
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, (
            f"{command}\nexit {result.returncode}\n{result.stderr[-3000:]}"
        )
        results.append((command, result))
    return results


def http_status(port: int, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.status, response.read().decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`genkeras serve` on serving/models.config (the shipped savedmodels/), as the README
    starts it, on free loopback ports; ready once every configured model is AVAILABLE."""
    work = tmp_path_factory.mktemp("readme-server")
    grpc_port = free_port()
    rest_port = free_port()
    while rest_port == grpc_port:
        rest_port = free_port()
    models = re.findall(r'^\s*name: "(\w+)"', CONFIG.read_text(), re.M)
    args = ["--model_config_file", CONFIG, "--port", grpc_port, "--rest_api_port", rest_port]

    def ready():
        return all("AVAILABLE" in http_status(rest_port, f"/v1/models/{m}")[1] for m in models)

    with genkeras_server(args, work, ready, timeout=240):
        yield grpc_port, rest_port


STANDALONE = [(h, code) for h, code in fenced_blocks("python") if "Client(" not in code]
WITH_SERVER = [(h, code) for h, code in fenced_blocks("python") if "Client(" in code]


def test_the_readme_has_the_examples_these_tests_run():
    assert STANDALONE and WITH_SERVER, "no ```python blocks found: did the fences change?"
    assert shell_commands(bash_block_under("### REST (curl)"))
    assert any("saved_model_cli" in code for _, code in fenced_blocks("bash"))


@pytest.mark.slow
@pytest.mark.parametrize("heading, code", STANDALONE, ids=[h for h, _ in STANDALONE])
def test_python_block_runs(heading, code):
    """A block that needs no server (the pretrained models, TFSMLayer), run from the repository
    root as written."""
    # TFSMLayer needs the TensorFlow backend, which the README says; pin it against a stray
    # KERAS_BACKEND=jax in the environment of the test run.
    result = run_python(code, timeout=240, env={"KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, f"README block under '{heading}':\n{result.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_client_block_runs_against_the_server(server, protocol):
    grpc_port, rest_port = server
    for heading, code in WITH_SERVER:
        code = with_ports(code, grpc_port, rest_port)
        if protocol == "rest":  # the alternative the block's comment gives
            grpc_client = f'Client("localhost", {grpc_port})'
            assert grpc_client in code, code
            code = code.replace(grpc_client, f'Client("localhost", {rest_port}, protocol="rest")')
        result = run_python(code, timeout=240)
        assert result.returncode == 0, f"README block under '{heading}':\n{result.stderr[-3000:]}"


@pytest.mark.slow
def test_curl_examples_answer_200(server, tmp_path):
    """Each curl line of "REST (curl)", in order, in a scratch folder (they write one.json)."""
    grpc_port, rest_port = server
    block = with_ports(bash_block_under("### REST (curl)"), grpc_port, rest_port)
    for command, result in run_bash(shell_commands(block), tmp_path):
        if "curl" in command:
            answer = json.loads(result.stdout)
            assert "error" not in answer, f"{command}\n{result.stdout[:1000]}"


@pytest.mark.slow
def test_saved_model_cli_examples_run(tmp_path):
    """The saved_model_cli lines, in a scratch folder that links savedmodels/ (they write
    images.npy and out/)."""
    (tmp_path / "savedmodels").symlink_to(ROOT / "savedmodels")
    block = next(code for _, code in fenced_blocks("bash") if "saved_model_cli" in code)
    for command, result in run_bash(shell_commands(block), tmp_path):
        if command.startswith("saved_model_cli show") and "--all" in command:
            assert "signature_def['encode']" in result.stdout, result.stdout[:2000]
        if command.startswith("saved_model_cli run"):
            assert "Result for output key" in result.stdout, result.stdout[:2000]
            outdir = re.search(r"--outdir (\S+)", command)
            if outdir:
                assert list((tmp_path / outdir.group(1)).glob("*.npy")), command


def test_python_m_modules_exist():
    for module in re.findall(r"python3? -m (genkeras[\w.]*)", README):
        assert importlib.util.find_spec(module) is not None, f"python -m {module}"


def test_genkeras_commands_exist():
    """`genkeras COMMAND` in bash blocks and inline code spans is a command of the CLI."""
    from genkeras.cli import COMMANDS

    prose = FENCE.sub("", README)
    shell = [code for _, code in fenced_blocks("bash")] + re.findall(r"`([^`]+)`", prose)
    named = {c for text in shell for c in re.findall(r"(?:^|[\s;&|(])genkeras ([a-z][\w-]*)", text)}
    assert "serve" in named, named  # the pattern still finds the commands
    assert named <= set(COMMANDS), f"not genkeras commands: {sorted(named - set(COMMANDS))}"


def test_genkeras_paths_exist():
    """`genkeras/...` paths (up to a placeholder such as NAME) are files or folders."""
    for path in set(re.findall(r"(?<![\w/.])genkeras/[\w/.-]*", README)):
        parts = path.split("/")
        kept = parts[: next((i for i, p in enumerate(parts) if re.search("[A-Z]", p)), None)]
        assert (ROOT / "/".join(kept).rstrip(".")).exists(), path


def test_genkeras_dotted_names_exist():
    """`genkeras.a.b.name`: the longest prefix is a module file or package folder of the source
    tree (read, not imported), and its source defines or mentions `name`."""
    for name in set(re.findall(r"(?<![\w./])genkeras(?:\.\w+)+", README)):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            base = ROOT.joinpath(*parts[:cut])
            if base.with_suffix(".py").is_file() or base.is_dir():
                break
        rest = parts[cut:]
        if rest:
            source = (
                base.with_suffix(".py")
                if base.with_suffix(".py").is_file()
                else base / "__init__.py"
            )
            assert source.is_file(), f"{name}: {'.'.join(parts[:cut])} is not a module"
            assert re.search(rf"\b{rest[0]}\b", source.read_text()), (
                f"{name}: no {rest[0]!r} in {source}"
            )
