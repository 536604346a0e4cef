"""``python -m core``: generate, import-onnx, info; bad input is one line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from core.cli import COMMANDS, build_parser, main
from core.graph import load_graph

ROOT = Path(__file__).resolve().parents[1]
LLAMA = ROOT / "sample_models" / "configs" / "llama-2-7b.json"
RESNET = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g.json"
    code, _, err = run(["generate", "--hf-config", str(LLAMA), "--workload", "train", "--batch", "2", "--seq", "256",
                        "--checkpointing", "-o", str(out)], capsys)
    assert code == 0 and "wrote" in err
    g = load_graph(out)
    assert g.meta["workload"] == {"kind": "train", "batch": 2, "seq": 256, "checkpointing": True}
    assert any(op.id.endswith(".recompute") for op in g.ops)


def test_import_onnx_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    code, _, _ = run(["import-onnx", str(RESNET), "--batch", "8", "--train", "-o", str(out)], capsys)
    assert code == 0
    code, text, _ = run(["info", str(out), "--json"], capsys)
    info = json.loads(text)
    assert code == 0 and info["params_total"] == 25_557_032 and info["op_count"] > 400
    code, text, _ = run(["info", str(out)], capsys)
    assert code == 0 and "25.6 M" in text


def test_info_other_sources(capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = run(["info", "tiny"], capsys)
    assert code == 0 and "tiny teaching graph" in text
    code, text, _ = run(["info", str(LLAMA), "--workload", "decode", "--batch", "4", "--json"], capsys)
    assert code == 0 and json.loads(text)["bytes_by_kind"]["kv_cache"] == 4 * 2048 * 524288
    code, text, _ = run(["info", str(RESNET), "--batch", "2", "--json"], capsys)
    assert code == 0 and json.loads(text)["workload"]["batch"] == 2


@pytest.mark.parametrize(("argv", "needle"), [
    (["info", "/nonexistent.json"], "/nonexistent.json: cannot read file"),
    (["generate", "--hf-config", str(RESNET), "--workload", "train", "-o", "-"], "not a UTF-8 text file"),
    (["import-onnx", str(LLAMA), "-o", "-"], "not a valid ONNX model"),
    (["generate", "--hf-config", str(LLAMA), "--workload", "train", "--batch", "0", "-o", "-"], "must be >= 1"),
    (["generate", "--hf-config", str(LLAMA), "--workload", "sing", "-o", "-"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_one_line_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_config_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    code, _, err = run(["generate", "--hf-config", str(bad), "--workload", "decode", "-o", "-"], capsys)
    assert code == 2 and "num_hidden_layers: missing required field" in err and str(bad) in err


def test_subprocess_entry_point(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(RESNET.read_bytes()[:2000])
    proc = subprocess.run([sys.executable, "-m", "core", "import-onnx", str(bad), "-o", str(tmp_path / "x.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_commands_are_pluggable() -> None:
    assert len(COMMANDS) >= 3
    names = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {"generate", "import-onnx", "info"} <= names


@pytest.mark.parametrize(("argv", "needle"), [
    (["serve", "sample", "--capacity-blocks", "-1"], "--capacity-blocks: must be >= 0, got -1"),
    (["serve", "sample", "--model", "llama-2-7b", "--prefill-instances", "0"], "--prefill-instances: must be >= 1"),
    (["fuzz", "--max-cases", "0"], "--max-cases: must be >= 1, got 0"),
    (["info", "tiny", "--batch", "x"], "--batch: expected a whole number, got 'x'"),
])
def test_whole_number_flags_fail_with_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err

