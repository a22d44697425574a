import pytest
import yaml

from mixing_env.errors import ConfigError
from rl_models.app.experiment import (
    TOP_LEVEL_KEYS,
    apply_overrides,
    has_search_space,
    list_experiments,
    load_experiment,
    parse_override,
    to_search_space,
)

SHIPPED = ["quickstart", "paper", "sweep_asha", "sweep_pbt", "ppo", "appo", "impala", "pg",
           "cluster"]


def test_every_experiment_file_is_shipped_and_loads():
    assert set(SHIPPED) <= set(list_experiments())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_experiment_schema(name):
    exp = load_experiment(name)
    assert set(exp) == set(TOP_LEVEL_KEYS)
    assert exp["algorithm"] in ("PPO", "APPO", "IMPALA", "PG")
    assert isinstance(exp["env"], dict) and isinstance(exp["stop"], dict)


def test_paper_matches_appendix_2():
    exp = load_experiment("paper")
    assert exp["model"]["hidden_size"] == 100 and exp["model"]["mix_hidden_size"] == 5
    assert exp["model"]["attention_dim"] == 100 and exp["env"]["rho"] == 0.01
    assert exp["env"]["obs_features"] == "raw"


def test_algorithm_files_use_their_algorithm():
    for name, algo in [("ppo", "PPO"), ("appo", "APPO"), ("impala", "IMPALA"), ("pg", "PG")]:
        assert load_experiment(name)["algorithm"] == algo


def test_cluster_has_gpu_learner_and_fault_tolerance():
    exp = load_experiment("cluster")
    assert exp["env_runners"]["num_env_runners"] >= 8
    assert exp["resources"]["num_gpus_per_learner"] == 1
    assert exp["fault_tolerance"]["restart_failed_env_runners"] is True


def test_overrides_are_yaml_parsed():
    exp = load_experiment("quickstart", overrides=["training.lr=1e-4", "env.rho=0.02",
                                                   "env.songs=[a, b]", "model.hidden_size=12",
                                                   "evaluation.env.synthetic.seed=7"])
    assert exp["training"]["lr"] == pytest.approx(1e-4)
    assert exp["env"]["rho"] == pytest.approx(0.02)
    assert exp["env"]["songs"] == ["a", "b"]
    assert exp["model"]["hidden_size"] == 12
    assert exp["evaluation"]["env"]["synthetic"]["seed"] == 7


@pytest.mark.parametrize("bad, match", [
    ("nonsense.lr=1", "unknown top-level key 'nonsense'"),
    ("training.lr", "KEY.PATH=VALUE"),
    ("=3", "KEY.PATH=VALUE"),
    ("seed.x=1", "not a mapping"),
])
def test_bad_overrides_raise(bad, match):
    with pytest.raises(ConfigError, match=match):
        load_experiment("quickstart", overrides=[bad])


def test_unknown_top_level_key_in_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "learning_rate": 1}))
    with pytest.raises(ConfigError, match="learning_rate"):
        load_experiment(path)


def test_missing_file_and_bad_algorithm(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_experiment(tmp_path / "nope.yaml")
    path = tmp_path / "exp.yaml"
    path.write_text("algorithm: DQN\n")
    with pytest.raises(ConfigError, match="unknown algorithm .DQN.; expected one of"):
        load_experiment(path)


def test_search_space_conversion():
    from ray.tune.search.sample import Categorical, Float

    space = to_search_space({"training": {"lr": {"loguniform": [1e-5, 1e-3]}},
                             "env": {"rho": {"grid_search": [0.0, 0.1]}},
                             "model": {"hidden_size": {"choice": [16, 32]}}, "seed": 0})
    assert isinstance(space["training"]["lr"], Float)
    assert space["training"]["lr"].lower == pytest.approx(1e-5)
    assert space["env"]["rho"] == {"grid_search": [0.0, 0.1]}
    assert isinstance(space["model"]["hidden_size"], Categorical)
    assert has_search_space(load_experiment("sweep_asha")["tune"]["param_space"])
    with pytest.raises(ConfigError, match="non-empty list"):
        to_search_space({"lr": {"loguniform": 3}})


def test_parse_override_types():
    assert parse_override("a.b=true") == (["a", "b"], True)
    assert parse_override("a=null") == (["a"], None)
    assert parse_override("a={x: 1}") == (["a"], {"x": 1})
    assert apply_overrides({"env": {}}, ["env.synthetic.n_songs=3"]) == {
        "env": {"synthetic": {"n_songs": 3}}}


def test_typed_config_is_the_one_schema():
    import dataclasses

    from rl_models.algorithms import ALGORITHMS
    from rl_models.app.experiment import DEFAULTS, ExperimentConfig
    from rl_models.registry import DEFAULT_MODULE

    assert TOP_LEVEL_KEYS == tuple(f.name for f in dataclasses.fields(ExperimentConfig))
    assert DEFAULTS["module"] == DEFAULT_MODULE
    for name in ALGORITHMS:  # every algorithm the builder knows is a valid experiment
        assert ExperimentConfig.from_dict({"algorithm": name.lower()}).algorithm == name
    config = ExperimentConfig.from_dict(load_experiment("quickstart"))
    assert config.evaluation.interval == 10 and config.checkpoint.num_to_keep == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.algorithm = "PG"
    assert ExperimentConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("data, match", [
    ({"algorithm": "DQN"}, "unknown algorithm 'DQN'"),
    ({"checkpoint": {"every": 3}}, r"unknown checkpoint key\(s\) \['every'\]"),
    ({"tune": {"mode": "best"}}, "tune.mode must be 'max' or 'min'"),
    ({"training": {"lr": "fast"}}, "training.lr must be a number"),
    ({"seed": "x"}, "seed must be an integer"),
    ({"stop": [1]}, "'stop' must be a mapping"),
    ({"name": 3}, "name must be a string"),
], ids=["algorithm", "section-key", "tune-mode", "lr", "seed", "stop", "name"])
def test_typed_config_errors_name_the_key(data, match):
    from rl_models.app.experiment import ExperimentConfig

    with pytest.raises(ConfigError, match=match):
        ExperimentConfig.from_dict(data, source="here")


def test_an_override_mistake_names_the_override():
    with pytest.raises(ConfigError, match=r"^--set training.lr=abc: training.lr must be"):
        load_experiment("quickstart", overrides=["training.lr=1e-3", "training.lr=abc"])


def test_lr_schedules_and_search_specs_stay_valid():
    exp = load_experiment("quickstart", overrides=["training.lr=[[0, 0.001], [1000, 0.0001]]"])
    assert exp["training"]["lr"] == [[0, 1e-3], [1000, 1e-4]]
    assert load_experiment("sweep_asha")["tune"]["param_space"]


def test_a_sweep_keeps_the_settings_it_does_not_search():
    from rl_models.app.train import trial_config

    exp = load_experiment("sweep_asha")
    space = trial_config(exp, sweep=True)
    for section in ("training", "model"):
        searched = exp["tune"]["param_space"][section]
        for key, value in exp[section].items():
            if key not in searched:
                assert space[section][key] == value, f"{section}.{key}"
    assert space["training"]["train_batch_size_per_learner"] == 2048


def test_relative_paths_are_made_absolute_where_the_command_runs(tmp_path, monkeypatch):
    """Trials run in their own folders: a relative dataset or demonstrations path must not."""
    monkeypatch.chdir(tmp_path)
    experiment = load_experiment("bc", overrides=[
        "env.dataset_dir=cache/songs", "evaluation.env.dataset_dir=s3://bucket/cache",
        "offline_data.input_=[runs/demos, /abs/demos]", "init_module_from=runs/bc"])
    assert experiment["env"]["dataset_dir"] == str(tmp_path / "cache" / "songs")
    assert experiment["evaluation"]["env"]["dataset_dir"] == "s3://bucket/cache"
    assert experiment["offline_data"]["input_"] == [str(tmp_path / "runs" / "demos"), "/abs/demos"]
    assert experiment["init_module_from"] == str(tmp_path / "runs" / "bc")
