"""Tests for snapshots.py: weight files round trip exactly and bad ones are refused clearly;
the Snapshotter saves on ticks of a (faked) wall clock; snapshots of the two parts pair up and
compose into the network they were taken from, whose held-out MSE (composed_mse,
composed_curve, measure_progress) is checked against sgd.mse on networks built here; metrics
lines are read back, torn ones skipped.

Run: .venv/bin/pytest -q tests/test_snapshots.py
"""

import json
import types

import numpy as np
import pytest

import generate
import sgd
from parts import checkpoint, snapshots


@pytest.fixture
def network():
    return sgd.make_network(np.random.default_rng(0))      # 2-24-12-1


@pytest.fixture
def clock(monkeypatch):
    """A fake time.time() for snapshots.py only: set clock.now to move it."""
    fake = types.SimpleNamespace(now=1_000_000.3)
    monkeypatch.setattr(snapshots, "time", types.SimpleNamespace(time=lambda: fake.now))
    return fake


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


# --- save_layers / load_layers ---------------------------------------------------------------

def test_save_and_load_round_trip_exactly(tmp_path, network):
    snapshots.save_layers(tmp_path / "layer1_initial.npz", network[:1], taken_at=123.5)
    snapshots.save_layers(tmp_path / "layers23_initial.npz", network[1:], taken_at=124.5)
    layer1 = snapshots.load_layers(tmp_path / "layer1_initial.npz", snapshots.LAYER1_SHAPES)
    layers23 = snapshots.load_layers(tmp_path / "layers23_initial.npz", snapshots.LAYERS23_SHAPES)
    loaded = layer1 + layers23
    assert len(loaded) == 3
    for got, want in zip(loaded, network, strict=True):
        assert got.w.dtype == np.float64 and got.b.dtype == np.float64
        np.testing.assert_array_equal(got.w, want.w)
        np.testing.assert_array_equal(got.b, want.b)
        assert got.activation is want.activation          # sigmoid, sigmoid, linear
    with np.load(tmp_path / "layer1_initial.npz") as f:
        assert float(f["time"]) == 123.5
        assert sorted(f.files) == ["b0", "time", "w0"]


def test_save_creates_the_folder_and_stamps_the_time(tmp_path, network, clock):
    path = tmp_path / "deep" / "er" / "layer1_final.npz"
    snapshots.save_layers(path, network[:1])
    with np.load(path) as f:
        assert float(f["time"]) == clock.now


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, network):
    path = tmp_path / "layers23_final.npz"
    for _ in range(3):                                      # overwriting, too
        snapshots.save_layers(path, network[1:])
    snapshots.save_layers(tmp_path / "layer1_final.npz", network[:1])
    assert files_in(tmp_path) == ["layer1_final.npz", "layers23_final.npz"]


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, network,
                                                                        monkeypatch):
    path = tmp_path / "layer1_final.npz"
    snapshots.save_layers(path, network[:1], taken_at=1.0)
    before = path.read_bytes()

    def disk_full(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshots.np, "savez", disk_full)
    with pytest.raises(OSError):
        snapshots.save_layers(path, network[:1])
    monkeypatch.undo()
    assert path.read_bytes() == before                      # atomic: the old file is intact
    # Regression: the half-written .layer1_final.npz.<pid>.tmp stays behind.
    assert files_in(tmp_path) == ["layer1_final.npz"]


def test_load_refuses_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read weights from .*nothing.npz"):
        snapshots.load_layers(tmp_path / "nothing.npz", snapshots.LAYER1_SHAPES)


def test_load_refuses_a_truncated_file(tmp_path, network):
    # Regression: a truncated .npz makes np.load raise zipfile.BadZipFile, which is not an OSError
    # (the comment in load_layers says it is) and so escapes as BadZipFile, not ValueError.
    path = tmp_path / "layers23_100.npz"
    snapshots.save_layers(path, network[1:])
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="layers23_100.npz"):
        snapshots.load_layers(path, snapshots.LAYERS23_SHAPES)


def test_load_refuses_an_empty_file(tmp_path):
    path = tmp_path / "layer1_5.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="cannot read weights from"):
        snapshots.load_layers(path, snapshots.LAYER1_SHAPES)


def test_load_refuses_a_text_file(tmp_path):
    path = tmp_path / "layer1_5.npz"
    path.write_text("these are not weights\n")
    with pytest.raises(ValueError, match="cannot read weights from"):
        snapshots.load_layers(path, snapshots.LAYER1_SHAPES)


def test_a_file_that_is_not_an_npz_is_said_so_not_offered_unpickling(tmp_path):
    path = tmp_path / "layer1_5.npz"
    path.write_bytes(bytes(range(256)) * 4)         # numpy: "pickled data ... load it unsafely"
    with pytest.raises(ValueError, match="layer1_5.npz: not an .npz archive$"):
        snapshots.load_layers(path, snapshots.LAYER1_SHAPES)


def test_load_refuses_an_npy_file(tmp_path):
    # Regression: for a file holding one .npy array, np.load returns an ndarray, which is not a context
    # manager: load_layers raises TypeError instead of ValueError.
    path = tmp_path / "layer1_5.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((2, 24)))
    with pytest.raises(ValueError, match="layer1_5.npz"):
        snapshots.load_layers(path, snapshots.LAYER1_SHAPES)


def test_load_refuses_wrong_shapes(tmp_path, network):
    path = tmp_path / "layers23_7.npz"
    snapshots.save_layers(path, network[1:])
    with pytest.raises(ValueError, match=r"layer 0 has w \(24, 12\).*expected w \(2, 24\)"):
        snapshots.load_layers(path, snapshots.LAYER1_SHAPES)
    path = tmp_path / "layer1_7.npz"
    snapshots.save_layers(path, network[:1])
    with pytest.raises(ValueError, match=r"layer 0 has w \(2, 24\)"):
        snapshots.load_layers(path, snapshots.LAYERS23_SHAPES)


def test_load_refuses_a_wrong_bias_shape(tmp_path, network):
    path = tmp_path / "layer1_7.npz"
    np.savez(path, time=0.0, w0=network[0].w, b0=np.zeros(23))
    with pytest.raises(ValueError, match=r"b \(23,\); expected w \(2, 24\), b \(24,\)"):
        snapshots.load_layers(path, snapshots.LAYER1_SHAPES)


def test_load_refuses_a_missing_layer(tmp_path, network):
    path = tmp_path / "layers23_7.npz"
    snapshots.save_layers(path, network[1:2])               # only layer 2
    with pytest.raises(ValueError, match=r"layer 1 is missing \(expected w1, b1\)"):
        snapshots.load_layers(path, snapshots.LAYERS23_SHAPES)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_load_refuses_nan_or_infinity(tmp_path, network, bad):
    network[2].w[3, 0] = bad
    path = tmp_path / "layers23_7.npz"
    snapshots.save_layers(path, network[1:])
    with pytest.raises(ValueError, match="layer 1 holds NaN or infinity"):
        snapshots.load_layers(path, snapshots.LAYERS23_SHAPES)


# --- Snapshotter -----------------------------------------------------------------------------

def test_snapshotter_saves_once_a_tick_has_passed(tmp_path, network, clock):
    clock.now = 1_000_003.7
    snap = snapshots.Snapshotter(tmp_path, "layers23", interval=10)
    assert snap.maybe_save(network[1:]) is False            # same tick as at creation
    clock.now = 1_000_009.99
    assert snap.maybe_save(network[1:]) is False
    assert files_in(tmp_path) == []

    clock.now = 1_000_010.2                                 # the tick 1,000,010 has passed
    assert snap.maybe_save(network[1:]) is True
    assert files_in(tmp_path) == ["layers23_1000010.npz"]
    with np.load(tmp_path / "layers23_1000010.npz") as f:
        assert float(f["time"]) == 1_000_010.2              # the exact time, not the tick
    clock.now = 1_000_019.9
    assert snap.maybe_save(network[1:]) is False            # once per tick

    clock.now = 1_000_047.5                                 # several ticks later: one save
    assert snap.maybe_save(network[1:]) is True
    clock.now = 1_000_049.0
    assert snap.maybe_save(network[1:]) is False
    assert snap.saved == 2
    ticks = sorted(snapshots.list_snapshots(tmp_path)["layers23"])
    assert ticks == [1_000_010, 1_000_040]
    assert all(t % 10 == 0 for t in ticks)


def test_a_write_the_disk_refuses_is_said_once_in_30_s_and_nothing_raises(tmp_path, network,
                                                                          monkeypatch, caplog):
    """A full disk (ENOSPC, tried on a 300 KiB tmpfs) killed the output trainer's training
    thread (a server answering, never training again) and the oracle's metrics thread, and ended
    train_input.py in a traceback, its unsent examples never flushed."""
    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    caplog.set_level("ERROR", logger="synthgrad")
    snap = snapshots.Snapshotter(tmp_path / "p", "layers23", interval=1)
    metrics = snapshots.MetricsLog(tmp_path / "m.jsonl", "oracle")
    saves = []
    checkpointer = checkpoint.Checkpointer(tmp_path / "c.npz", 30, lambda path: saves.append(
        snapshots.write_npz(path, {"a": np.arange(len(saves) + 1)})))
    checkpointer.now()                                           # written while there is room
    monkeypatch.setattr(snapshots.np, "savez", no_space)
    monkeypatch.setattr(snapshots, "_append", no_space)
    for _ in range(2):                                           # twice each: said once
        snap.next_tick = 0
        assert snap.maybe_save(network[1:]) is False and snap.saved == 0
        metrics.write(a=1)
        checkpointer.now()
    assert snap.save_final(network[1:]) is False                 # the last is always said
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"could not write {what} ([Errno 28] No space left on device); training goes "
                    f"on, and each write tries again" for what in
                    (f"snapshots into {tmp_path / 'p'}", f"metrics to {tmp_path / 'm.jsonl'}",
                     f"the checkpoint {tmp_path / 'c.npz'}", f"the final weights into "
                     f"{tmp_path / 'p'}")], said
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "c.npz"]  # no .tmp
    np.testing.assert_array_equal(checkpoint.snapshots.read_npz(tmp_path / "c.npz", "c")["a"],
                                  [0])                           # the last checkpoint, whole
    monkeypatch.undo()                                           # room again: writes go through
    snap.next_tick = 0
    assert snap.maybe_save(network[1:]) is True and snap.saved == 1
    metrics.write(a=2)
    assert [row["a"] for row in snapshots.read_metrics(tmp_path / "m.jsonl")] == [2]


def test_snapshotter_initial_and_final(tmp_path, network, clock):
    snap = snapshots.Snapshotter(tmp_path, "layer1", interval=5)
    snap.save_initial(network[:1])
    snap.save_final(network[:1])
    assert files_in(tmp_path) == ["layer1_final.npz", "layer1_initial.npz"]
    found = snapshots.list_snapshots(tmp_path)
    assert set(found["layer1"]) == {"initial", "final"} and found["layers23"] == {}
    assert snapshots.paired_ticks(tmp_path) == []           # labelled ends are not ticks


def test_two_parts_on_the_same_clock_get_the_same_label(tmp_path, network, clock):
    clock.now = 2_000_000.1
    snap1 = snapshots.Snapshotter(tmp_path, "layer1", interval=30)
    clock.now = 2_000_000.4
    snap23 = snapshots.Snapshotter(tmp_path, "layers23", interval=30)
    clock.now = 2_000_009.9
    assert not snap1.maybe_save(network[:1]) and not snap23.maybe_save(network[1:])
    clock.now = 2_000_010.05                                 # 2,000,010 is a multiple of 30
    assert snap1.maybe_save(network[:1])
    clock.now = 2_000_010.4                                  # a training step later
    assert snap23.maybe_save(network[1:])
    assert files_in(tmp_path) == ["layer1_2000010.npz", "layers23_2000010.npz"]
    assert snapshots.paired_ticks(tmp_path) == [2_000_010]


def test_paired_ticks_needs_both_parts(tmp_path, network):
    for label in (100, 200, 300, "initial", "final"):
        snapshots.save_layers(tmp_path / f"layer1_{label}.npz", network[:1])
    for label in (200, 300, 400, "final"):
        snapshots.save_layers(tmp_path / f"layers23_{label}.npz", network[1:])
    (tmp_path / "layer1_500.npz.bak").write_text("")         # not snapshot names
    (tmp_path / "layers23_x500.npz").write_text("")
    (tmp_path / "other_500.npz").write_text("")
    assert snapshots.paired_ticks(tmp_path) == [200, 300]
    found = snapshots.list_snapshots(tmp_path)
    assert set(found["layer1"]) == {100, 200, 300, "initial", "final"}
    assert set(found["layers23"]) == {200, 300, 400, "final"}


def test_load_composed_predicts_like_the_original(tmp_path, network):
    snapshots.save_layers(tmp_path / "layer1_600.npz", network[:1])
    snapshots.save_layers(tmp_path / "layers23_600.npz", network[1:])
    composed = snapshots.load_composed(tmp_path, 600)
    assert [layer.w.shape for layer in composed] == [(2, 24), (24, 12), (12, 1)]
    assert [layer.activation for layer in composed] == [sgd.Sigmoid, sgd.Sigmoid, sgd.Linear]
    x = np.random.default_rng(1).uniform(-1, 1, (50, 2))
    np.testing.assert_allclose(sgd.predict(composed, x), sgd.predict(network, x),
                               rtol=1e-15, atol=0)


def test_load_composed_mixes_labels(tmp_path, network):
    other = sgd.make_network(np.random.default_rng(7))
    snapshots.save_layers(tmp_path / "layer1_initial.npz", network[:1])
    snapshots.save_layers(tmp_path / "layers23_final.npz", other[1:])
    composed = snapshots.load_composed(tmp_path, "initial", "final")
    x = np.random.default_rng(2).uniform(-1, 1, (20, 2))
    np.testing.assert_allclose(sgd.predict(composed, x), sgd.predict(network[:1] + other[1:], x),
                               rtol=1e-15, atol=0)
    with pytest.raises(ValueError, match="layers23_initial.npz"):
        snapshots.load_composed(tmp_path, "initial")         # no layers23_initial


def test_fractional_interval_saves_once_per_tick(tmp_path, network, clock):
    # Regression: _tick() truncates to an int, so with interval 0.5 the tick 100.5 becomes label 100
    # and next_tick = 100 + 0.5 is already past: every maybe_save between 100.5 and 101
    # writes (and overwrites layers23_100.npz), i.e. a save on every training step.
    # Either fix passes: refuse a fractional interval, or save once per tick with distinct labels.
    clock.now = 100.2
    try:
        snap = snapshots.Snapshotter(tmp_path, "layers23", interval=0.5)
    except ValueError as e:
        assert "interval" in str(e)
        return
    saves = 0
    for t in (100.6, 100.7, 100.8, 100.9):                   # all inside the tick [100.5, 101)
        clock.now = t
        saves += snap.maybe_save(network[1:])
    assert saves == 1
    clock.now = 101.1                                        # the next tick, a new label
    assert snap.maybe_save(network[1:])
    assert len(files_in(tmp_path)) == 2


# --- Evaluating a progress folder -------------------------------------------------------------

@pytest.fixture
def progress(recorded_run):
    return recorded_run


@pytest.fixture(scope="module")
def heldout():
    return generate.heldout(2000)                           # x (2000, 2), y (2000,)


def test_snapshot_time_reads_the_time_it_was_taken(progress, tmp_path):
    folder, _ = progress
    assert snapshots.snapshot_time(folder / "layers23_final.npz") == 1026.25
    (tmp_path / "torn.npz").write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="cannot read the time of .*torn.npz"):
        snapshots.snapshot_time(tmp_path / "torn.npz")


def test_composed_mse_is_the_mse_of_the_network_put_back_together(progress, heldout):
    folder, nets = progress
    x, y = heldout
    assert snapshots.composed_mse(folder, x, y) == pytest.approx(
        sgd.mse(nets["final"], x, y), abs=1e-12)            # "final" by default
    assert snapshots.composed_mse(folder, x, y, 1010) == pytest.approx(
        sgd.mse(nets[1010], x, y), abs=1e-12)
    swapped = nets["initial"][:1] + nets["final"][1:]
    mixed = snapshots.composed_mse(folder, x, y, "initial", "final")
    assert mixed == pytest.approx(sgd.mse(swapped, x, y), abs=1e-12)
    assert mixed != pytest.approx(snapshots.composed_mse(folder, x, y, "final"))
    assert isinstance(mixed, float)
    with pytest.raises(ValueError, match="layers23_1030.npz"):
        snapshots.composed_mse(folder, x, y, 1030)           # only layer 1 saved tick 1030


def test_composed_curve_has_one_point_per_paired_tick_in_time_order(progress, heldout):
    folder, nets = progress
    x, y = heldout
    curve = snapshots.composed_curve(folder, x, y, origin=997.25)
    assert [seconds for seconds, _ in curve] == [2.75, 12.75, 22.75]   # not 1030: unpaired
    for (_, mse), tick in zip(curve, (1000, 1010, 1020), strict=True):
        assert mse == pytest.approx(sgd.mse(nets[tick], x, y), abs=1e-12)
    assert [t for t, _ in snapshots.composed_curve(folder, x, y)] == [1000, 1010, 1020]


def test_composed_curve_of_a_folder_without_ticks_is_empty(tmp_path, network, heldout):
    snapshots.save_layers(tmp_path / "layer1_final.npz", network[:1])
    snapshots.save_layers(tmp_path / "layers23_final.npz", network[1:])
    assert snapshots.composed_curve(tmp_path, *heldout) == []


def test_find_moments_lists_the_pairs_in_time_order_and_the_swap(progress):
    folder, _ = progress
    moments, unpaired = snapshots.find_moments(folder)
    assert moments == [("initial", "initial", "initial"), (1000, 1000, 1000),
                       (1010, 1010, 1010), (1020, 1020, 1020), ("final", "final", "final"),
                       (snapshots.SWAP_LABEL, "initial", "final")]
    assert unpaired == [1030]


def test_moment_time_is_the_tick_or_the_later_file(progress):
    folder, _ = progress
    assert snapshots.moment_time(folder, 1010, 1010, 1010) == 1010.0
    assert snapshots.moment_time(folder, "initial", "initial", "initial") == 996.0
    assert snapshots.moment_time(folder, "final", "final", "final") == 1026.25
    assert snapshots.moment_time(folder, snapshots.SWAP_LABEL, "initial", "final") is None


def test_measure_progress_measures_every_moment(progress, heldout, capsys):
    folder, nets = progress
    x, y = heldout
    rows, networks, skipped = snapshots.measure_progress(folder, x, y)
    assert "1 unpaired tick(s) skipped (saved by only one trainer): [1030]" in capsys.readouterr().out
    assert skipped == 0
    assert [r["label"] for r in rows] == ["initial", 1000, 1010, 1020, "final",
                                          snapshots.SWAP_LABEL]
    assert [r["seconds"] for r in rows] == [996.0, 1000.0, 1010.0, 1020.0, 1026.25, None]
    for r in rows[:-1]:
        assert r["layer1"] == r["layers23"] == r["label"]
        assert r["mse"] == pytest.approx(sgd.mse(nets[r["label"]], x, y), abs=1e-12)
        np.testing.assert_array_equal(networks[r["label"]][0].w, nets[r["label"]][0].w)
    swapped = nets["initial"][:1] + nets["final"][1:]
    assert rows[-1]["mse"] == pytest.approx(sgd.mse(swapped, x, y), abs=1e-12)
    # Measuring stored nothing on the layers it returns: they were never fed forward.
    assert not any(hasattr(layer, "a_in") for net in networks.values() for layer in net)


def test_measure_progress_skips_an_unreadable_pair(progress, heldout, capsys):
    folder, _ = progress
    (folder / "layers23_1010.npz").write_bytes(b"not a zip file")
    rows, networks, skipped = snapshots.measure_progress(folder, *heldout)
    assert "skipping 1010: cannot read weights" in capsys.readouterr().out
    assert skipped == 1 and 1010 not in networks
    assert [r["label"] for r in rows if isinstance(r["label"], int)] == [1000, 1020]


def test_measure_progress_says_when_there_is_nothing_there(tmp_path, network, heldout):
    with pytest.raises(snapshots.NothingToRead, match="no progress folder at .*missing"):
        snapshots.measure_progress(tmp_path / "missing", *heldout)
    with pytest.raises(snapshots.NothingToRead, match="no complete weight snapshots in"):
        snapshots.measure_progress(tmp_path, *heldout)
    (tmp_path / "layer1_1000.npz").write_bytes(b"")
    (tmp_path / "layers23_1000.npz").write_bytes(b"")
    with pytest.raises(snapshots.NothingToRead, match="none of the 1 snapshot pairs"):
        snapshots.measure_progress(tmp_path, *heldout)


def test_decoupled_final_prefers_final_then_the_last_tick():
    rows = [{"label": "initial"}, {"label": 1000}, {"label": 1010}, {"label": "final"},
            {"label": snapshots.SWAP_LABEL}]
    networks = {r["label"]: f"net {r['label']}" for r in rows}
    assert snapshots.decoupled_final(rows, networks) == (rows[3], "net final")
    assert snapshots.decoupled_final(rows[:3], networks) == (rows[2], "net 1010")
    assert snapshots.decoupled_final(rows[:1], networks) is None


def test_load_backprop_reads_the_baselines_whole_network(tmp_path, network):
    with pytest.raises(snapshots.NothingToRead, match="no .*backprop/final.npz .*baseline"):
        snapshots.load_backprop(tmp_path)
    snapshots.save_layers(tmp_path / "backprop" / "final.npz", network)
    loaded = snapshots.load_backprop(tmp_path)
    for got, want in zip(loaded, network, strict=True):
        np.testing.assert_array_equal(got.w, want.w)
        np.testing.assert_array_equal(got.b, want.b)
    snapshots.save_layers(tmp_path / "backprop" / "final.npz", network[1:])
    with pytest.raises(snapshots.NothingToRead, match=r"layer 0 has w \(24, 12\)"):
        snapshots.load_backprop(tmp_path)


# --- Metrics ---------------------------------------------------------------------------------

def test_metrics_log_lines_read_back_in_order(tmp_path, clock):
    log = snapshots.MetricsLog(tmp_path / "deep" / "m.jsonl", "oracle")
    log.write(examples=10, mse=0.5)
    clock.now += 2.5
    log.write(examples=20, mse=None)
    rows = snapshots.read_metrics(tmp_path / "deep" / "m.jsonl")
    assert rows == [
        {"time": 1_000_000.3, "stage": "oracle", "seconds": 0.0, "examples": 10, "mse": 0.5},
        {"time": 1_000_002.8, "stage": "oracle", "seconds": 2.5, "examples": 20, "mse": None}]


def test_read_metrics_without_a_file_is_empty(tmp_path, capsys):
    assert snapshots.read_metrics(tmp_path / "missing.jsonl") == []
    assert snapshots.read_metrics(tmp_path) == []           # a folder is not a metrics file
    assert capsys.readouterr().out == ""


def test_read_metrics_skips_torn_and_non_object_lines_with_a_message(tmp_path, capsys):
    path = tmp_path / "oracle.jsonl"
    good = [{"time": 1.0, "a": 1}, {"time": 2.0, "a": None}, {"time": 3.0, "a": 3.5}]
    path.write_text(json.dumps(good[0]) + "\n" + "[1, 2]\n" + json.dumps(good[1]) + "\n\n"
                    + "17\n" + json.dumps(good[2]) + "\n" + '{"time": 4.0, "a"')
    assert snapshots.read_metrics(path) == good               # blank lines are not counted
    assert f"{path}: skipped 3 line(s) that are not JSON objects" in capsys.readouterr().out


def test_read_metrics_says_a_count_of_skipped_lines_once_not_at_every_poll(tmp_path, capsys):
    path = tmp_path / "stage1.jsonl"
    path.write_text('{"time": 1.0}\n{"time": 2.\n{"time": 3.0}\n')
    for _ in range(3):                                 # a live page or a watch polling the file
        assert len(snapshots.read_metrics(path)) == 2
    assert capsys.readouterr().out.count("skipped 1 line(s)") == 1
    with open(path, "a") as f:
        f.write("[4]\n")
    snapshots.read_metrics(path)
    snapshots.read_metrics(path)
    assert capsys.readouterr().out.count("skipped 2 line(s)") == 1   # a new one is said again


def test_column_and_last_finite():
    rows = [{"a": 1}, {"a": None}, {}, {"a": True}, {"a": "x"}, {"a": 2.5}, {"a": float("nan")},
            {"b": 7}]
    np.testing.assert_array_equal(snapshots.column(rows, "a"),
                                  [1.0, np.nan, np.nan, np.nan, np.nan, 2.5, np.nan, np.nan])
    assert snapshots.column([], "a").shape == (0,)
    assert snapshots.last_finite(rows, "a") == 2.5
    assert snapshots.last_finite(rows, "b") == 7.0
    assert snapshots.last_finite(rows, "c") is None
    assert snapshots.last_finite([], "a") is None


def test_streaming_start_is_the_input_trainers_first_line(tmp_path):
    assert snapshots.streaming_start(tmp_path) is None
    path = tmp_path / "metrics" / "train_input.jsonl"
    path.parent.mkdir()
    path.write_text('{"time": 997.25, "examples": 0}\n{"time": 1007.25, "examples": 500}\n')
    assert snapshots.streaming_start(tmp_path) == 997.25
