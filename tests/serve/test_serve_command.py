"""`jaxnsfw serve` as a command: its flags, and what it says without the `serve` extra."""

from __future__ import annotations

import subprocess
import sys

from jaxnsfw.cli import build_parser
from jaxnsfw.serve import command
from serve.serving import REPO


def test_the_flags_become_the_service_configuration(tmp_path):
    args = build_parser().parse_args(["serve", "--port", "9000", "--max-batch", "16", "--max-wait-ms", "2",
                                      "--decode-workers", "3", "--state-dir", str(tmp_path), "--max-queue", "10",
                                      "--score-root", str(tmp_path), "--allow-url-fetch", "Images.Example.com"])
    config = command.config_from(args)
    assert (config.port, config.max_batch, config.max_wait_ms, config.decode_workers) == (9000, 16, 2.0, 3)
    assert config.state_dir == tmp_path and config.max_queue == 10
    assert config.score_roots == (tmp_path.resolve(),) and config.url_hosts == ("images.example.com",)


def test_without_the_serve_extra_it_says_what_to_install_and_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(command, "missing_modules", lambda: ["fastapi", "uvicorn"])
    args = build_parser().parse_args(["serve"])
    assert args.run(args) == 2
    assert "pip install 'jaxnsfw[serve]'" in capsys.readouterr().err


def test_bad_flags_are_usage_errors():
    result = subprocess.run([sys.executable, "-m", "jaxnsfw", "serve", "--max-batch", "0"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--max-batch" in result.stderr
