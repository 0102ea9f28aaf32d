import json
import os
import stat

import pytest
import torch

from llava_video.atomic import atomic_path, write_bytes_atomic, write_json_atomic, write_text_atomic


def test_writes_replace_the_file_and_leave_nothing_beside_it(tmp_path):
    target = tmp_path / "sub" / "report.json"  # missing folders are made
    write_json_atomic(target, {"a": "é"})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": 2}
    write_text_atomic(tmp_path / "t.txt", "x\n")
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "t.txt").read_text() == "x\n" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["b.bin", "report.json", "sub", "t.txt"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_partial_one(tmp_path):
    target = tmp_path / "state.pt"
    with atomic_path(target) as tmp:
        torch.save({"step": 1}, tmp)
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a fi")
            raise RuntimeError("killed mid-write")
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_files_get_the_processes_umask_not_private_temp_file_modes(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "config.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o644
