"""Checkpoints at the CLI: plain weights only, damaged files named, nothing unpickled."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest

from rl_models import checkpoints
from rl_models.app import cli


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("deepmixing: error: ")
    return err[0]


def _newest(experiment_dir):
    return checkpoints.find_checkpoint(experiment_dir)


@pytest.fixture
def trained_copy(trained, tmp_path):
    """A copy of the tiny experiment folder that a test may damage."""
    return shutil.copytree(trained, tmp_path / "experiment")


class _Marker:
    """Unpickling this creates a file: proof that a pickle ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_crafted_pickles_in_the_rllib_part_never_run(trained_copy, product_cache, product_songs,
                                                      tmp_path, capsys):
    marker = tmp_path / "pwned"
    ckpt = _newest(trained_copy)
    rllib_files = [p for p in ckpt.rglob("*") if p.is_file()
                   and p.name not in (checkpoints.METADATA_FILE, checkpoints.POLICY_CONFIG_FILE,
                                      checkpoints.WEIGHTS_FILE)]
    assert any(p.suffix == ".pkl" for p in rllib_files)
    for p in rllib_files:
        p.write_bytes(pickle.dumps(_Marker(marker)))
    pickle.loads((ckpt / checkpoints.MODULE_SUBDIR / "class_and_ctor_args.pkl").read_bytes())
    assert marker.exists()  # the crafted file does run when unpickled...
    marker.unlink()

    song = sorted(p for p in product_songs.iterdir() if p.is_dir())[0]
    assert cli.main(["evaluate", str(ckpt), "--dataset", str(product_cache), "--out",
                     str(tmp_path / "eval"), "--no-plots", "--no-progress"]) == 0
    assert cli.main(["mix", str(ckpt), str(song), "--out", str(tmp_path / "mix"),
                     "--no-progress"]) == 0
    assert not marker.exists()  # ...and neither evaluate nor mix unpickled it
    assert "deprecat" not in capsys.readouterr().err.lower()


@pytest.mark.parametrize("name", [checkpoints.METADATA_FILE, checkpoints.POLICY_CONFIG_FILE,
                                  checkpoints.WEIGHTS_FILE])
def test_a_garbled_file_is_named(trained_copy, product_cache, tmp_path, capsys, name):
    ckpt = _newest(trained_copy)
    (ckpt / name).write_text("#garbled{")
    assert cli.main(["evaluate", str(ckpt), "--dataset", str(product_cache), "--out",
                     str(tmp_path / "eval"), "--no-progress"]) == 2
    assert str(ckpt / name) in _one_line_error(capsys)


def test_a_damaged_newest_checkpoint_points_to_the_older_one(trained_copy, product_songs,
                                                             tmp_path, capsys):
    found = checkpoints.list_checkpoints(trained_copy)
    assert len(found) == 2
    (found[-1] / checkpoints.WEIGHTS_FILE).write_bytes(b"\x00truncated")
    song = sorted(p for p in product_songs.iterdir() if p.is_dir())[0]
    assert cli.main(["mix", str(trained_copy), str(song), "--out", str(tmp_path / "mix"),
                     "--no-progress"]) == 2
    line = _one_line_error(capsys)
    assert str(found[-1] / checkpoints.WEIGHTS_FILE) in line and str(found[0]) in line
    assert not (tmp_path / "mix").exists() or not any((tmp_path / "mix").iterdir())


def test_old_checkpoints_need_an_explicit_trusted_export(trained_copy, product_cache, tmp_path,
                                                         capfd):
    capsys = capfd
    ckpt = _newest(trained_copy)
    (ckpt / checkpoints.WEIGHTS_FILE).unlink()
    (ckpt / checkpoints.POLICY_CONFIG_FILE).unlink()
    args = ["evaluate", str(ckpt), "--dataset", str(product_cache), "--out",
            str(tmp_path / "eval"), "--no-plots", "--no-progress"]
    assert cli.main(args) == 2
    assert "deepmixing export-weights" in _one_line_error(capsys)
    assert cli.main(["export-weights", str(ckpt)]) == 0
    assert "deprecat" not in capfd.readouterr().err.lower()  # RLlib's load warning is filtered
    assert (ckpt / checkpoints.WEIGHTS_FILE).is_file()
    assert cli.main(args) == 0
    rows = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["rows"]
    assert rows[-1]["song"] == "MEAN" and rows[-1]["mfcc_distance"] > 0


def test_exported_weights_equal_the_trained_ones(trained_copy):
    import torch

    ckpt = _newest(trained_copy)
    written = torch.load(ckpt / checkpoints.WEIGHTS_FILE, weights_only=True)
    os.rename(ckpt / checkpoints.WEIGHTS_FILE, ckpt / "trained.pt")
    checkpoints.export_policy_files(ckpt)
    exported = torch.load(ckpt / checkpoints.WEIGHTS_FILE, weights_only=True)
    assert written.keys() == exported.keys()
    for key in written:
        torch.testing.assert_close(written[key], exported[key])


@pytest.mark.parametrize("command", ["mix", "evaluate"])
def test_help_says_which_files_are_read(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name in ("deepmixing.json", "policy.json", "policy_weights.pt", "weights_only=True"):
        assert name in out


def test_a_garbled_module_constructor_file_is_named_before_training(trained_copy, tmp_path,
                                                                    capsys, monkeypatch):
    from rl_models.app import train

    monkeypatch.setattr(train, "init_ray", lambda **kw: pytest.fail("Ray started"))
    ckpt = _newest(trained_copy)
    (ckpt / checkpoints.MODULE_SUBDIR / "class_and_ctor_args.pkl").write_bytes(b"garbled")
    assert cli.main(["train", "quickstart", "--storage-path", str(tmp_path / "runs"),
                     "--set", f"init_module_from={ckpt}"]) == 2
    assert str(ckpt / checkpoints.MODULE_SUBDIR) in _one_line_error(capsys)
    assert not (tmp_path / "runs").exists()
