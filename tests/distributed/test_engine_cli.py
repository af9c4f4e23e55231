"""The --engine flags of `jaxnsfw score`, without starting Ray: usage errors, the missing extra,
and Ray started before anything imports JAX in the driver."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import DATA, REPO
from jaxnsfw.cli import build_parser


def _parse_error(capsys, *args: str, command: str = "score") -> str:
    parser = build_parser()
    args_ns = parser.parse_args([command, *args])
    with pytest.raises(SystemExit) as stop:
        args_ns.check(args_ns.command_parser, args_ns)
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_engine_flags_are_checked_before_anything_runs(capsys, tmp_path):
    assert "--manifest needs --engine ray" in _parse_error(capsys, "--manifest", "list.txt")
    assert "--ray-address needs --engine ray" in _parse_error(capsys, "x.png", "--ray-address", "auto")
    assert "--engine ray needs --out DIR" in _parse_error(capsys, "x.png", "--engine", "ray")
    assert "names a file" in _parse_error(capsys, "x.png", "--engine", "ray", "--out", "scores.jsonl")
    assert "not both" in _parse_error(capsys, "x.png", "--engine", "ray", "--out", "o", "--manifest", "m")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["score", "--engine", "spark"])
    args = build_parser().parse_args(["score", "x.png", "--engine", "ray", "--out", str(tmp_path)])
    args.check(args.command_parser, args)  # a valid combination passes


def test_embed_takes_the_same_engine_flags_and_writes_parquet_shards_only(capsys, tmp_path):
    def embed_error(*args: str) -> str:
        return _parse_error(capsys, *args, command="embed")

    assert "--manifest needs --engine ray" in embed_error("--manifest", "list.txt", "--out", "e.parquet")
    assert "names a file" in embed_error("x.png", "--engine", "ray", "--out", "embeddings.parquet")
    assert "--shard-format jsonl is for score" in embed_error("x.png", "--engine", "ray", "--out", "o",
                                                              "--shard-format", "jsonl")
    assert "give at least one PATH" in embed_error("--out", "e.parquet")
    args = build_parser().parse_args(["embed", "--engine", "ray", "--manifest", "m.txt", "--out", str(tmp_path)])
    args.check(args.command_parser, args)  # a manifest instead of PATHs


_DRIVER = """
import sys
{setup}
from jaxnsfw.cli import main
sys.exit(main({argv!r}))
"""


def _driver(setup: str, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _DRIVER.format(setup=setup, argv=argv)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_without_ray_the_engine_says_how_to_install_it(tmp_path):
    result = _driver("sys.modules['ray'] = None  # as if Ray were not installed",
                     ["score", str(DATA / "images" / "pixel_1x1.png"), "--engine", "ray", "--out", str(tmp_path)])
    assert result.returncode == 2
    assert 'pip install "jaxnsfw[ray]"' in result.stderr and "Traceback" not in result.stderr


def test_ray_starts_before_jax_is_imported_in_the_driver(tmp_path):
    pytest.importorskip("ray")
    setup = """
import ray
def init(*args, **kwargs):
    print("jax imported before ray.init:", "jax" in sys.modules, flush=True)
    raise SystemExit(0)
ray.init = init
"""
    result = _driver(setup, ["score", str(DATA / "images"), "--engine", "ray", "--out", str(tmp_path / "o")])
    assert result.returncode == 0, result.stderr
    assert "jax imported before ray.init: False" in result.stdout


def test_an_address_where_nothing_answers_is_a_message_and_exit_2(tmp_path):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as unused:  # a port that was free a moment ago: nothing listens there
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = _driver("", ["score", str(DATA / "images" / "pixel_1x1.png"), "--engine", "ray", "--ray-address",
                          f"127.0.0.1:{port}", "--out", str(tmp_path / "o")])
    assert result.returncode == 2
    assert f"cannot start or reach Ray at 127.0.0.1:{port}: nothing answers" in result.stderr
