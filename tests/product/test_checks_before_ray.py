"""Mistakes in an experiment or a sweep: one error line, exit 2, before Ray or any folder."""

from __future__ import annotations

import socket

import pytest

from rl_models.app import cli, train


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if the command got as far as starting Ray."""

    def refuse(**kwargs):
        raise AssertionError("Ray was started before the mistake was reported")

    monkeypatch.setattr(train, "init_ray", refuse)


def _refused(capsys, tmp_path, *argv) -> str:
    """Runs the CLI, expects exit 2 with one error line and no results folder; the line."""
    runs = tmp_path / "runs"
    assert cli.main([*map(str, argv), "--storage-path", str(runs)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("deepmixing: error: "), err
    assert not runs.exists()
    return err[0]


@pytest.mark.parametrize(("sets", "names"), [
    (["tune.param_space.training.lrr={choice: [0.1, 0.2]}"],
     ["tune.param_space", "unknown training key(s) ['lrr']"]),
    (["tune.param_space.training.gamma={choice: [0.5, abc]}"],
     ["sweep setting training.gamma='abc'", "training.gamma must be a number"]),
    (["tune.param_space.training.lr={loguniform: [0.1]}"],
     ["tune.param_space.training.lr", "loguniform"]),
    (["tune.param_space.model.use_lstm={choice: [true]}"],
     ["model key(s) ['use_lstm'] are not read by module 'deepmixing_attention_lstm'"]),
    (["tune.param_space.env.rhoo={choice: [0.1]}"], ["env", "rhoo"]),
    (["tune.scheduler.max_tt=3"], ["tune.scheduler (asha)", "max_tt"]),
    (["tune.metric=null"], ["tune.scheduler needs tune.metric"]),
], ids=["unknown-key", "bad-value", "bad-spec", "unread-model-key", "env-key",
        "scheduler-argument", "scheduler-without-metric"])
def test_a_bad_sweep_is_refused_before_ray(sets, names, capsys, tmp_path, no_ray):
    line = _refused(capsys, tmp_path, "tune", "sweep_asha",
                    *[x for s in sets for x in ("--set", s)])
    for name in names:
        assert name in line


def test_a_bad_pbt_mutation_is_refused_before_ray(capsys, tmp_path, no_ray):
    line = _refused(capsys, tmp_path, "tune", "sweep_pbt", "--set",
                    "tune.scheduler.hyperparam_mutations.training.lrr=[0.1, 0.2]")
    assert "sweep setting training.lrr=0.1" in line and "['lrr']" in line


@pytest.mark.parametrize(("sets", "names"), [
    (["model.use_lstm=true"], ["['use_lstm']", "not read by module", "hidden_size"]),
    (["module=rllib_default", "model={hidden_size: 8}"],
     ["model key(s) ['hidden_size']", "module 'rllib_default'"]),
    (["module=transformer"], ["unknown module 'transformer'"]),
    (["algorithm=no_such_package:MyConfig"], ["cannot import 'no_such_package'"]),
    (["algorithm=collections:OrderedDict"], ["must be a subclass of", "AlgorithmConfig"]),
    (["module=collections:OrderedDict"], ["must be a subclass of", "TorchRLModule"]),
    (["algorithm=missing_file.py:MyConfig"], ["cannot import 'missing_file'"]),
], ids=["unread-model-key", "rllib-default-key", "unknown-module", "algorithm-import",
        "algorithm-not-a-config", "module-not-a-module", "algorithm-file-missing"])
def test_a_bad_experiment_is_refused_before_ray(sets, names, capsys, tmp_path, no_ray):
    line = _refused(capsys, tmp_path, "train", "quickstart",
                    *[x for s in sets for x in ("--set", s)])
    for name in names:
        assert name in line


@pytest.fixture
def fresh_process(monkeypatch):
    """As in a new ``deepmixing`` process: no Ray yet (the suite's own may be running)."""
    import ray

    def refuse(**kwargs):
        raise AssertionError("ray.init was called for an address that should be refused")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)


def test_an_address_where_nothing_listens_ends_with_one_line(capsys, tmp_path, fresh_process):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = _refused(capsys, tmp_path, "train", "quickstart", "--address", f"127.0.0.1:{port}")
    assert f"no Ray cluster at 127.0.0.1:{port}" in line


def test_a_malformed_address_is_named(capsys, tmp_path, fresh_process):
    line = _refused(capsys, tmp_path, "train", "quickstart", "--address", "my-head")
    assert "--address must be 'auto' or host:port, got 'my-head'" in line
