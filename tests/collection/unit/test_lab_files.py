"""The lab's file handling: written only when different (check mode writes nothing), removed
only when the lab wrote them."""

from __future__ import annotations

import os
from pathlib import Path

from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.files import (
    ensure_dir,
    ensure_file,
    remove_file,
    remove_tree,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.network import Changes
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.render import MARKER


def test_ensure_file_is_idempotent_and_dry_runs_write_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "hosts.yml"
    dry = Changes(dry=True)
    assert ensure_file(str(path), "a\n", dry) is True
    assert dry.lines == [f"write {path}"]
    assert not path.exists()
    real = Changes()
    assert ensure_file(str(path), "a\n", real, mode=0o644) is True
    assert path.read_text() == "a\n"
    assert path.stat().st_mode & 0o777 == 0o644
    again = Changes()
    assert ensure_file(str(path), "a\n", again, mode=0o644) is False
    assert again.lines == []
    assert ensure_file(str(path), "a\n", again, mode=0o600) is True  # mode alone
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_file(str(path), "b\n", again, mode=0o600) is True
    assert path.read_text() == "b\n"
    assert [p.name for p in path.parent.iterdir()] == ["hosts.yml"]  # no temporary left


def test_remove_file_with_a_marker_spares_foreign_files(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.yml", tmp_path / "theirs.yml"
    ours.write_text(f"{MARKER} for the lab\nall: {{}}\n")
    theirs.write_text("all: {}\n")
    ch = Changes()
    remove_file(str(theirs), ch, marker=MARKER)
    remove_file(str(ours), ch, marker=MARKER)
    assert theirs.exists() and not ours.exists()
    assert ch.lines == [f"remove {ours}"]


def test_remove_tree_removes_only_the_named_entries(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    ensure_dir(str(lab / "sites" / "site1"), Changes())
    (lab / "sites" / "site1" / "init.log").write_text("x")
    (lab / "known_hosts").write_text("x")
    (lab / "notes.txt").write_text("the user's")
    remove_tree(str(lab), ["sites", "known_hosts", "id_ed25519"], Changes())
    assert sorted(os.listdir(lab)) == ["notes.txt"]  # kept, and so is the directory
    (lab / "notes.txt").unlink()
    (lab / "known_hosts").write_text("x")
    dry = Changes(dry=True)
    remove_tree(str(lab), ["known_hosts"], dry)
    assert (lab / "known_hosts").exists()
    assert dry.lines == [f"remove {lab / 'known_hosts'}", f"remove directory {lab}"]
    remove_tree(str(lab), ["known_hosts"], Changes())
    assert not lab.exists()
