"""The Listen, Evaluate and Share tabs' actions on a real run, the command line, and where gradio may be imported."""

from __future__ import annotations

import ast
import os
import socket
import sys
from pathlib import Path

import pytest

from musicgen_lora.studio import outputs
from musicgen_lora.studio.__main__ import build_parser, check_port
from musicgen_lora.studio.__main__ import main as studio_main

from ..hub.fake_hub import USER, FakeHub

TOKEN = "hf_studio_secret_token_0123456789"
ROOT = Path(__file__).resolve().parents[2]


def test_the_run_s_models_are_listed_newest_first(studio_run):
    # rendering them is tested in the browser (test_browser.py), where the page's Render button runs it
    assert list(outputs.models(studio_run["studio"], "tiny")) == ["final", "checkpoint-6", "checkpoint-3"]
    assert outputs.default_models(outputs.models(studio_run["studio"], "tiny")) == ["final"]


@pytest.mark.parametrize(
    ("prompt", "duration", "seed", "guidance", "chosen", "message"),
    [
        ("", 1, 0, 3, [], "the prompt is empty"),
        ("jazz", 0, 0, 3, [], "duration must be more than 0"),
        ("jazz", 1, 0.5, 3, [], "seed must be a whole number"),
        ("jazz", 1, 0, 0.5, [], "guidance must be at least 1"),
        ("jazz", 1, 0, 3, ["checkpoint-99"], "no model checkpoint-99 in this run"),
    ],
)
def test_bad_render_values_are_messages(studio_run, prompt, duration, seed, guidance, chosen, message):
    steps = list(outputs.render(studio_run["studio"], "tiny", prompt, duration, seed, guidance, chosen))
    assert len(steps) == 1 and steps[0].done and steps[0].results == []
    assert steps[0].message.startswith("**Error:** ") and message in steps[0].message


def test_evaluate_shows_the_comparison_numbers_and_the_report(studio_run):
    steps = list(outputs.evaluate(studio_run["studio"], "tiny"))
    last = steps[-1]
    assert last.done and "Evaluated" in last.message, last.message
    table, report = last.results
    assert Path(report).is_file() and Path(report).name == "report.html"
    assert list(table.columns) == ["metric", "base", "final", "final vs base"]
    rows = table.set_index("metric")
    ce = rows.loc["Cross-entropy on 'train' (training data, not held out): ce (mean over all targets, nats)"]
    assert float(ce["final"]) < float(ce["base"]) and ce["final vs base"].endswith("(better)")  # it learnt


def test_merge_writes_a_standalone_model(studio_run):
    message, folder = outputs.merge(studio_run["studio"], "tiny")
    assert message.startswith("Merged"), message
    assert (Path(folder) / "config.json").is_file() and not (Path(folder) / "adapter_config.json").exists()
    config_mode = (Path(folder) / "config.json").stat().st_mode & 0o777
    assert (Path(folder) / "model.safetensors").stat().st_mode & 0o777 == config_mode  # not owner-only


@pytest.fixture
def hub(monkeypatch):
    """The loopback Hub of tests/fake_hub.py, reachable by the push command (a subprocess: environment only)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with FakeHub(TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def test_push_uses_the_typed_token_and_never_writes_it_down(studio_run, hub):
    studio, repo = studio_run["studio"], f"{USER}/studio-lora"
    message, url = outputs.push(studio, "tiny", repo, True, TOKEN)
    assert message.startswith("Pushed to") and repo in url, message
    assert hub.repos[repo].private is True and "adapter_model.safetensors" in hub.repos[repo].files
    leaked = [p for p in studio.root.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaked == [] and TOKEN not in message


def test_a_refused_push_is_one_line_without_the_token(studio_run, monkeypatch):
    # the push command's own failures are tested in tests/test_hub.py; here: what the page makes of one
    secret = "hf_wrong_token_value"
    seen = {}

    def refused(argv, cwd, env=None, timeout=None):
        seen.update(argv=argv, env=env)
        return (
            2,
            f"INFO pushing with {secret}\nerror: pushing 'run' to 'u/r' failed (401: token {secret} is invalid); "
            f"retry\n",
        )

    monkeypatch.setattr(outputs, "run_command", refused)
    message, url = outputs.push(studio_run["studio"], "tiny", f"{USER}/other", False, f" {secret} ")
    assert url is None and message == "**Error:** pushing 'run' to 'u/r' failed (401: token *** is invalid); retry"
    assert seen["env"] == {"HF_TOKEN": secret} and not any(secret in word for word in seen["argv"])
    message, _ = outputs.push(studio_run["studio"], "tiny", "no-slash", False, None)
    assert message == "**Error:** repository id 'no-slash' must look like your-name/musicgen-lora-jazz"


def test_a_busy_port_is_a_one_line_error(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as stopped:
            studio_main(["--port", str(port), "--projects_dir", str(tmp_path)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"error: port {port} on 127.0.0.1 is busy (another studio or program uses it); stop it or choose another "
        f"port: --port {port + 1}"
    )


def test_a_port_whose_last_connections_linger_in_time_wait_is_free(tmp_path):
    """A studio stopped a moment ago (it closed its connections first, as a server does) leaves them in TIME-WAIT on
    its port for a minute: the next studio binds the port (the probe binds as uvicorn does, with SO_REUSEADDR)."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's listening socket
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as browser:
            connection, _ = server.accept()
            connection.close()  # the server's side closes first: it lingers in TIME-WAIT
            browser.recv(1)
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # the lingering connection holds the port for a plain bind
    check_port("127.0.0.1", port)  # no "port is busy"


def test_the_page_is_served_on_loopback_without_a_share_link_or_analytics(tmp_path, monkeypatch):
    """README Studio: http://127.0.0.1:7860 on the demo by default, projects in studio_projects/; only --host serves
    beyond this machine, only --share opens Gradio's public link, and Gradio's analytics are off (the page is built
    as the command builds it; its serving is recorded instead of started)."""
    gradio = pytest.importorskip("gradio", reason="gradio not installed (pip install -r requirements-studio.txt)")
    served = []
    monkeypatch.setattr(gradio.Blocks, "launch", lambda app, **options: served.append((app, options)))
    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)  # (set again by the command; restored after)
    defaults = build_parser().parse_args([])
    assert (defaults.host, defaults.port, defaults.projects_dir, defaults.project, defaults.share) == (
        "127.0.0.1", 7860, "studio_projects", "demo", False,
    )  # fmt: skip
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    said = studio_main(["--port", port, "--projects_dir", str(tmp_path), "--project", "mine"])
    app, options = served[-1]
    assert (options["server_name"], options["server_port"], options["share"]) == ("127.0.0.1", int(port), False)
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and app.analytics_enabled is False
    assert said["url"] == f"http://127.0.0.1:{port}" and "isConnected" in options["head"]  # the page's own script
    studio_main(["--port", port, "--projects_dir", str(tmp_path), "--project", "mine", "--host", "0.0.0.0", "--share"])
    assert (served[-1][1]["server_name"], served[-1][1]["share"]) == ("0.0.0.0", True)


def test_without_gradio_the_command_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # as on a machine without it: importing it fails
    for name in [m for m in sys.modules if m.startswith("musicgen_lora.studio.page")]:
        monkeypatch.delitem(sys.modules, name)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SystemExit) as stopped:
        studio_main(["--port", str(port), "--projects_dir", str(tmp_path)])
    assert stopped.value.code == 2 and not any(tmp_path.iterdir())  # nothing built before saying so
    assert (
        capsys.readouterr().err
        == "error: the studio needs gradio; install it with: pip install -r requirements-studio.txt\n"
    )


def test_only_the_studio_page_imports_gradio():
    importers = []
    for path in sorted((ROOT / "musicgen_lora").rglob("*.py")) + sorted(ROOT.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name.split(".")[0] == "gradio" for name in names):
                importers.append(path.relative_to(ROOT).as_posix())
    assert importers and all(path.startswith("musicgen_lora/studio/page/") for path in importers), importers
