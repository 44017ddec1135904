"""Scene files that are empty, hostile YAML, not YAML at all or misspelt get one clear line
each (exit 2 from ``cksim validate``), quickly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cyberknife_sim.cli import main
from cyberknife_sim.errors import SceneError
from cyberknife_sim.scene import load_scene


def _validate(path, capsys) -> list[str]:
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines and all(ln.startswith(f"cksim validate: error: {path}: ") for ln in lines), err
    return lines


def _alias_bomb(levels: int = 9) -> str:
    text = "a0: &a0 [" + ", ".join(["lol"] * 9) + "]\n"
    for i in range(1, levels):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n"
    return text


@pytest.mark.parametrize(("text", "words"), [
    ("", "scene file is empty"),
    ("# only a comment\n\n", "scene file is empty"),
    (_alias_bomb(), "aliases expand to more than"),
    ("a: " + "[" * 3000 + "]" * 3000 + "\n", "nested more than"),
    ("".join("  " * i + f"k{i}:\n" for i in range(200)), "nested more than"),
    ("name: a\nsimulation:\n  seed: 1\n  seed: 2\n", "line 4: duplicate key 'seed' (first at "
     "line 3)"),
    ("name: a\nname: b\n", "line 2: duplicate key 'name'"),
])
def test_hostile_or_empty_yaml_is_one_line(tmp_path, capsys, text, words):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    lines = _validate(path, capsys)
    assert len(lines) == 1 and words in lines[0], lines


def test_explicit_empty_mapping_is_the_default_scene(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("{}\n")
    assert main(["validate", str(path)]) == 0


def test_a_ct_file_is_not_a_yaml_text_file(tmp_path, capsys):
    import gzip

    path = tmp_path / "ct.nii.gz"
    path.write_bytes(gzip.compress(b"\x5c\x01\x00\x00" + bytes(range(256)) * 8))
    (line,) = _validate(path, capsys)
    assert "not a YAML text file" in line


def test_a_folder_is_named_as_one(tmp_path, capsys):
    (tmp_path / "scenes").mkdir()
    (line,) = _validate(tmp_path / "scenes", capsys)
    assert "is a folder" in line and "not found" not in line


@pytest.mark.parametrize(("text", "key", "suggestion"), [
    ("tracking:\n  imaging_intervall_s: 30\n", "tracking.imaging_intervall_s",
     "did you mean 'imaging_interval_s'?"),
    ("room:\n  imaging:\n    binnin: 4\n", "room.imaging.binnin", "did you mean 'binning'?"),
    ("nmae: x\n", "nmae", "did you mean 'name'?"),
    ("motion: {spine: {shifts: [{time_s: 1, translaton_mm: [0, 0, 1]}]}}\n",
     "motion.spine.shifts.0.translaton_mm", "did you mean 'translation_mm'?"),
])
def test_unknown_key_gets_a_suggestion(tmp_path, capsys, text, key, suggestion):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    (line,) = _validate(path, capsys)
    assert f": {key}: unknown key" in line and line.endswith(suggestion), line


def test_no_suggestion_for_a_key_unlike_any(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("zzzzqqq: 1\n")
    (line,) = _validate(path, capsys)
    assert "did you mean" not in line


def test_newlines_in_keys_and_values_stay_on_one_line(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text('"bad\\nkey": 1\nsimulation: {seed: "a\\nb"}\n')
    lines = _validate(path, capsys)
    assert len(lines) == 2, lines
    assert any("'bad\\nkey': unknown key" in ln for ln in lines), lines
    assert any("simulation.seed" in ln and "'a\\nb'" in ln for ln in lines), lines


def test_large_alias_expansion_within_limits_is_reported_cheaply(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(_alias_bomb(5))  # 9**5 = 59049 leaves: under the node limit
    with pytest.raises(SceneError) as err:
        load_scene(path)
    assert all(len(p) < 300 for p in err.value.problems)


@pytest.mark.parametrize("kind", ["bomb", "fifo"])
def test_hang_cases_finish_in_a_subprocess(tmp_path, kind):
    path = tmp_path / "s.yaml"
    if kind == "bomb":
        path.write_text(_alias_bomb())
    else:
        if not hasattr(os, "mkfifo"):
            pytest.skip("needs FIFOs")
        os.mkfifo(path)
    out = subprocess.run([sys.executable, "-m", "cyberknife_sim.cli", "validate", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"cksim validate: error: {path}: ")
