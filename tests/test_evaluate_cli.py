"""The evaluate command (examples/s4rec/evaluate.py), end to end on a tiny generated dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from s4rec_components import (
    SASRecEncoder,
    SequenceDataset,
    generate_synthetic,
    rank_targets,
    ranking_metrics,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "s4rec"
sys.path.insert(0, str(EXAMPLE))

import evaluate  # noqa: E402

KEYS = ["HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20"]
NUM_ITEMS = 40
MAX_LEN = 10


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A generated dataset written in the one-line format and an ICLRec-style checkpoint."""
    folder = tmp_path_factory.mktemp("cli")
    data = generate_synthetic(num_users=150, num_items=NUM_ITEMS, num_intents=4, seed=2)
    data_path = data.save(folder / "tiny.txt")
    torch.manual_seed(0)
    encoder = SASRecEncoder(NUM_ITEMS, hidden_size=16, num_layers=2, num_heads=4, max_len=MAX_LEN)
    state = encoder.to_iclrec_state_dict()
    assert "item_embeddings.weight" in state and "item_encoder.layer.0.attention.query.weight" in state
    checkpoint = folder / "iclrec.pt"
    torch.save(state, checkpoint)
    return folder, data_path, checkpoint


def expected_metrics(checkpoint: Path, data_path: Path, which: str, quirk: bool) -> tuple[dict, torch.Tensor]:
    """The same evaluation computed in-process from library pieces only."""
    data = SequenceDataset.from_sequences(
        [[int(i) for i in line.split()[1:]] for line in data_path.read_text().splitlines()]
    )
    split = data.split(max_len=MAX_LEN)
    encoder = SASRecEncoder.from_iclrec_state_dict(torch.load(checkpoint, weights_only=True), num_heads=4).eval()
    with torch.no_grad():
        z = encoder.represent(split.inputs(which), pooling="last")
        if quirk:
            scores = z @ encoder.item_embeddings.weight.T  # every column, as the public code
            ranks = rank_targets(scores, split.targets(which), split.history(which), ignore_ids=(),
                                 history_value=0.0)
        else:
            scores = encoder.score_items(z)
            ranks = rank_targets(scores, split.targets(which), split.history(which), ignore_ids=(0,))
    return ranking_metrics(ranks), ranks


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLE / "evaluate.py"), *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def check_last_line(stdout: str) -> dict[str, float]:
    metrics = json.loads(stdout.strip().splitlines()[-1])
    assert list(metrics) == KEYS
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    return metrics


def test_cli_end_to_end_matches_in_process(assets):
    folder, data_path, checkpoint = assets
    done = run_cli("--data", str(data_path), "--iclrec-checkpoint", str(checkpoint), "--num-heads", "4",
                   "--batch-size", "64", "--output", str(folder / "ranks.json"))
    assert done.returncode == 0, done.stderr
    metrics = check_last_line(done.stdout)
    expected, ranks = expected_metrics(checkpoint, data_path, "test", quirk=False)
    assert metrics == pytest.approx({k: expected[k] for k in KEYS}, rel=1e-12, abs=1e-15)
    assert metrics["HR@20"] > 0  # 40 items: a random model still hits often at 20
    saved = json.loads((folder / "ranks.json").read_text())
    assert saved["split"] == "test" and [u["rank"] for u in saved["users"]] == ranks.tolist()
    assert [u["length"] for u in saved["users"][:3]] == [
        len(line.split()) - 1 for line in data_path.read_text().splitlines()[:3]
    ]


def test_cli_iclrec_quirk_valid_split(assets):
    folder, data_path, checkpoint = assets
    done = run_cli("--data", str(data_path), "--iclrec-checkpoint", str(checkpoint), "--num-heads", "4",
                   "--split", "valid", "--iclrec-quirk", "--no-progress", "--output", str(folder / "ranks.pt"))
    assert done.returncode == 0, done.stderr
    metrics = check_last_line(done.stdout)
    expected, ranks = expected_metrics(checkpoint, data_path, "valid", quirk=True)
    assert metrics == pytest.approx({k: expected[k] for k in KEYS}, rel=1e-12, abs=1e-15)
    saved = torch.load(folder / "ranks.pt", weights_only=True)
    assert torch.equal(saved["rank"], ranks) and saved["split"] == "valid"


def test_main_in_process_and_protocols_differ(assets, capsys):
    _, data_path, checkpoint = assets
    common = ["--data", str(data_path), "--iclrec-checkpoint", str(checkpoint), "--num-heads", "4", "--no-progress"]
    plain = evaluate.main(common)
    assert capsys.readouterr().out.strip().splitlines()[-1] == json.dumps(plain)
    quirk = evaluate.main(common + ["--iclrec-quirk"])
    # excluding the history can only improve ranks over scoring it 0, never hurt
    assert all(plain[k] >= quirk[k] - 1e-12 for k in KEYS) and plain != quirk


def test_score_split_is_importable_and_restores_mode(assets):
    _, data_path, checkpoint = assets
    data = evaluate.load_dataset(data_path)
    encoder = evaluate.load_iclrec_checkpoint(checkpoint, num_heads=4, device="cpu").train()
    result = evaluate.score_split(encoder, data.split(max_len=MAX_LEN), "test", batch_size=32)
    expected, ranks = expected_metrics(checkpoint, data_path, "test", quirk=False)
    assert torch.equal(result.ranks, ranks) and encoder.training  # eval inside, mode restored


def test_cli_errors(assets, tmp_path):
    _, data_path, checkpoint = assets
    bigger = tmp_path / "big.txt"
    bigger.write_text("1 1 2 3\n2 4 5 45\n")  # item 45 > the checkpoint's 40 items
    with pytest.raises(ValueError, match="data has item ids up to 45 but the checkpoint knows 40"):
        evaluate.main(["--data", str(bigger), "--iclrec-checkpoint", str(checkpoint), "--num-heads", "4"])
    with pytest.raises(ValueError, match="exceeds the checkpoint's position table"):
        evaluate.main(["--data", str(data_path), "--iclrec-checkpoint", str(checkpoint), "--num-heads", "4",
                       "--max-len", "11"])
    with pytest.raises(FileNotFoundError, match="no such file"):
        evaluate.main(["--data", str(tmp_path / "none.txt"), "--iclrec-checkpoint", str(checkpoint)])
    with pytest.raises(ValueError, match="use --iclrec-checkpoint"):  # an ICLRec file given as ours
        evaluate.main(["--data", str(bigger), "--checkpoint", str(checkpoint)])
    with pytest.raises(SystemExit):  # exactly one checkpoint option
        evaluate.parse_args(["--data", "x"])
    done = run_cli("--data", str(bigger), "--iclrec-checkpoint", str(checkpoint), "--num-heads", "4")
    assert done.returncode == 2 and "checkpoint knows 40" in done.stderr and done.stdout == ""
