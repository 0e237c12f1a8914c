"""Tests for lab/chain_speed.py: it times the real code paths of every part of a chain and adds
them up as it says (no timing is checked: the benchmark itself is run by hand).

Run: .venv/bin/pytest -q tests/test_chain_speed.py
"""

import json

import numpy as np
import pytest

from lab import chain_speed


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(chain_speed, "SECONDS", 0.05)


def test_a_stage_costs_its_training_and_every_message_it_handles():
    r = chain_speed.measure(16, 10)
    train, m, g = r["training_us"], r["message_us"], r["gradient_message_us"]
    assert all(np.isfinite(v) and v > 0 for v in [*train.values(), m, g])
    assert r["stage_us"] == pytest.approx({
        "stage1": train["stage1"] + m,
        "stage2": train["middle_stage"] + 2 * m + g,
        "stage3": train["middle_stage"] + 2 * m + g,
        "stage4": train["stage4"] + m + g})
    assert r["slowest_stage_us"] == max(r["stage_us"].values())
    assert r["speed_up"] == pytest.approx(train["one_process"] / r["slowest_stage_us"])


def test_a_timed_message_reaches_a_real_server_and_is_stored(monkeypatch, tmp_path):
    sent = []
    real = chain_speed.synthgrad.OutputTrainerClient.send_examples

    def counted(self, i, x, y):
        sent.append(real(self, i, x, y))           # the server's answer
        return sent[-1]
    monkeypatch.setattr(chain_speed.synthgrad.OutputTrainerClient, "send_examples", counted)
    assert chain_speed.time_message(8, tmp_path) > 0
    assert len(sent) >= 4                              # a warm-up and at least three timed
    assert all(answer == {"ok": True, "received": chain_speed.CHUNK} for answer in sent)


def test_the_command_writes_one_row_per_width_and_minibatch(tmp_path):
    out = tmp_path / "parts.json"
    assert chain_speed.main(["--widths", "8,16", "--batch-sizes", "10", "--out",
                             str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["width"], r["batch_size"]) for r in rows] == [(8, 10), (16, 10)]
    assert chain_speed.main(["--widths", "8", "--batch-sizes", "5", "--one-process", "--out",
                             str(out)]) == 0
    found = json.loads(out.read_text())
    assert set(found["rows"][0]) == {"width", "batch_size", "one_process_us"}
    assert found["clock"] == "wall clock"          # CPU time would add up the BLAS threads
