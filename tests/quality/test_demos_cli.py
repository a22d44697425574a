import numpy as np

from rl_models.app.cli import main
from rl_models.app.demonstrations import read_demonstrations


def test_demos_command_writes_episodes_bc_reads(tmp_path, capsys):
    out = tmp_path / "demos"
    code = main([
        "demos", "bc", "--out", str(out), "--episodes-per-song", "1",
        "--set", "env.synthetic={n_songs: 2, seconds: 1.0, n_tracks: 3, seed: 0}",
        "--set", "env.episode_chunks=10",
    ])
    assert code == 0
    episodes = read_demonstrations(out)
    assert len(episodes) == 2 and all(len(e) == 10 and e.is_done for e in episodes)
    np.testing.assert_allclose(np.asarray(episodes[0].get_actions()).sum(axis=1), 1.0, rtol=1e-5)
    assert "offline_data.input_" in capsys.readouterr().out


def test_demos_command_rejects_unknown_experiment(tmp_path, capsys):
    assert main(["demos", "no_such_experiment", "--out", str(tmp_path)]) == 2
    assert "deepmixing: error:" in capsys.readouterr().err
