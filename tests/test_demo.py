"""Tests for demo.py's options: how they become the launcher's configurations (the launcher
itself is tested in test_launch.py; the demo as a whole is run by hand).

Run: .venv/bin/pytest -q tests/test_demo.py
"""

import dataclasses
from pathlib import Path

import pytest

import demo
from helpers import decoupled_argvs
from runner import launch


def test_the_demos_defaults_are_the_launchers(tmp_path):
    args = demo.parse_args([])
    config = demo.decoupled_config(args, tmp_path)
    default = launch.DecoupledConfig(run_dir=tmp_path, duration=demo.DURATION)
    assert decoupled_argvs(config)[0] == decoupled_argvs(default)[0]
    assert decoupled_argvs(config, "o")[1] == decoupled_argvs(default, "o")[1]
    assert decoupled_argvs(config, "o", "t")[2] == decoupled_argvs(default, "o", "t")[2]
    assert args.oracle_args == "" and args.duration == demo.DURATION


def test_oracle_and_input_args_go_to_the_processes_as_typed(tmp_path):
    args = demo.parse_args(["--oracle-args", "", "--input-args",
                            "--synthetic-gradients remote --refresh-every 0.5"])
    config = demo.decoupled_config(args, tmp_path)
    assert decoupled_argvs(config)[0][-2:] == ["--metrics",
                                               str(tmp_path / "metrics" / "oracle.jsonl")]
    assert decoupled_argvs(config, "o", "t")[2][-4:] == ["--synthetic-gradients", "remote",
                                                        "--refresh-every", "0.5"]


def test_the_controls_are_the_same_run_with_layer_1_frozen_or_random(tmp_path):
    args = demo.parse_args([])
    main = demo.decoupled_config(args, tmp_path)
    for update in demo.CONTROLS:
        control = demo.decoupled_config(args, tmp_path / "controls" / update, update,
                                        tmp_path / "data")
        assert control == dataclasses.replace(
            main, run_dir=tmp_path / "controls" / update, update=update,
            data_dir=tmp_path / "data")
    assert demo.CONTROLS == ("frozen", "random")


def test_the_baseline_has_the_decoupled_trainers_settings_unless_told_otherwise(tmp_path):
    args = demo.parse_args(["--duration", "30", "--seed", "3"])
    same = launch.backprop_like(demo.decoupled_config(args, tmp_path))
    config = demo.backprop_config(args, tmp_path, demo.parse_baseline_args("", same))
    assert config == launch.BackpropConfig(
        data_dir=tmp_path / "data", seconds=30.0, eval_every=20_000,
        metrics=tmp_path / "metrics" / "backprop.jsonl",
        weights_out=tmp_path / "backprop" / "final.npz",
        learning_rate=0.005, batch_size=10, decay=1.0, seed=3, optimizer="adam")
    tutorial = demo.parse_baseline_args("--batch-size 1 --learning-rate 0.002 --decay 0.997 "
                                        "--seed 9 --optimizer sgd", same)
    assert tutorial == dict(batch_size=1, learning_rate=0.002, decay=0.997, seed=9,
                            optimizer="sgd")


@pytest.mark.parametrize("text", ["--learning-rate 0", "--batch-size 0", "--decay 1.5",
                                  "--epochs 3"])
def test_bad_baseline_args_are_refused_before_anything_runs(text, capsys):
    with pytest.raises(SystemExit) as e:
        demo.parse_baseline_args(text, launch.backprop_like(launch.DecoupledConfig(".")))
    assert e.value.code == 2
    assert "demo.py --baseline-args" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--seed", "2016"], ["--count", "999"], ["--duration", "0"], ["--seed", "-1"],
    ["--input-learning-rate", "nan"], ["--output-learning-rate", "0"], ["--status-every", "-1"],
    ["--output-batch-size", "0"], ["--snapshot-interval", "0"], ["--live-port", "-1"],
    ["--live-port", "65536"],
])
def test_bad_options_are_refused(argv):
    with pytest.raises(SystemExit) as e:
        demo.parse_args(argv)
    assert e.value.code == 2


def test_main_refuses_bad_baseline_args_without_making_a_run_folder(tmp_path):
    with pytest.raises(SystemExit):
        demo.main(["--run-dir", str(tmp_path / "run"), "--baseline-args", "--decay 2"])
    assert not Path(tmp_path / "run").exists()


def test_the_live_page_is_on_by_default_and_one_flag_turns_it_off(tmp_path, capsys):
    args = demo.parse_args([])
    assert args.live is True and args.live_port == 0           # a free port, printed
    off = demo.parse_args(["--no-live"])
    stop = launch.start_live_page(tmp_path, off, "demo")       # starts nothing
    assert stop() is None and capsys.readouterr().out == ""
    assert "--no-live" in decoupled_argvs(demo.decoupled_config(args, tmp_path), "o")[1]


def test_a_live_page_that_cannot_start_is_one_line_and_the_run_goes_on(tmp_path, capsys):
    import socket
    with socket.socket() as s:                                  # its port taken
        s.bind(("127.0.0.1", 0))
        s.listen()
        args = demo.parse_args(["--live-port", str(s.getsockname()[1])])
        stop = launch.start_live_page(tmp_path, args, "demo")
    out = capsys.readouterr().out
    assert stop() is None
    assert out.count("\n") == 1 and "live page did not start" in out and "going on" in out


def test_a_phase_whose_process_does_not_start_still_draws_what_was_saved(tmp_path, monkeypatch,
                                                                        capsys):
    """Supervisor.start's SystemExit escaped main: no cut_short.json and no pictures, though
    the phases before it had finished."""
    import json
    drawn = []

    def phases(args, run_dir, baseline, env):
        (run_dir / "final_status.json").write_text("{}")         # the synthetic phase's
        raise SystemExit(f"oracle did not start; see {run_dir / 'controls' / 'oracle.log'}")
    monkeypatch.setattr(demo, "run_phases", phases)
    monkeypatch.setattr(demo.subprocess, "run", lambda argv, **kw: drawn.append(argv) or
                        type("Done", (), {"returncode": 0})())
    code = demo.main(["--run-dir", str(tmp_path / "run"), "--no-live"])
    why = json.loads((tmp_path / "run" / "cut_short.json").read_text())["cut_short"]
    assert code == 1 and why.startswith("oracle did not start; see ")
    assert len(drawn) == 1 and "plot.py" in " ".join(map(str, drawn[0]))
    assert "demo: cut short: oracle did not start" in capsys.readouterr().out


def test_a_run_dir_that_holds_a_run_is_refused_and_left_as_it_was(tmp_path, capsys):
    """A second demo (or chain.py) with the same --run-dir appended to the first's metrics and
    overwrote its weights, pictures and results."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "final_status.json").write_text('{"first": true}')
    with pytest.raises(SystemExit) as e:
        demo.main(["--run-dir", str(run), "--no-live"])
    assert "is not empty (an earlier run's?)" in str(e.value.code)
    assert [p.name for p in run.iterdir()] == ["final_status.json"]
    assert (run / "final_status.json").read_text() == '{"first": true}'


def test_ctrl_c_while_the_pictures_are_drawn_is_one_line_and_exit_130(tmp_path, monkeypatch,
                                                                      capsys):
    def interrupted(argv, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(demo, "run_phases", lambda *a: None)
    monkeypatch.setattr(demo.subprocess, "run", interrupted)
    import signal
    before = signal.getsignal(signal.SIGTERM)
    assert demo.main(["--run-dir", str(tmp_path / "run"), "--no-live"]) == 130
    assert "demo: interrupted while drawing; `python plot.py --run-dir " in \
        capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is before          # the session's handlers went
