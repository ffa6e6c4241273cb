"""The reference example (examples/s4rec): loss assembly, adversary sign, training, resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "s4rec"
sys.path.insert(0, str(EXAMPLE))

from config import PRESETS, TrainConfig  # noqa: E402
from model import S4Rec, load_checkpoint  # noqa: E402
import train as train_script  # noqa: E402

from s4rec_components import generate_synthetic  # noqa: E402

EXPECTED_TERMS = {
    "sasrec": {"sr"},
    "cl4srec": {"sr", "scl"},
    "sr+csd": {"sr", "scl", "ckd"},
    "sr+csd+gr": {"sr", "scl", "ckd", "adv"},
    "s4rec-no-csd": {"sr", "clust", "adv"},
    "s4rec-no-gr": {"sr", "clust", "scl", "ckd"},
    "s4rec": {"sr", "clust", "scl", "ckd", "adv"},
}
WEIGHT_OF = {"sr": None, "clust": "alpha", "scl": "beta1", "ckd": "beta2", "adv": "lam"}


def tiny_config(**overrides) -> TrainConfig:
    values = dict(
        hidden_size=16, num_layers=1, num_heads=2, max_len=12, num_prototypes=4, batch_size=64,
        eval_batch_size=256, synthetic_users=160, synthetic_items=40, dropout=0.1, patience=50,
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def tiny_batch():
    data = generate_synthetic(num_users=64, num_items=40, seed=1)
    split = data.split(max_len=12)
    heads = (split.train_lengths > split.train_lengths.float().median()).long()
    return split, heads


def test_every_preset_has_expected_terms():
    assert set(EXPECTED_TERMS) == set(PRESETS)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_loss_assembly(preset, loss, tiny_batch):
    split, heads = tiny_batch
    weights = dict(alpha=0.3, beta1=0.7, beta2=1.9, lam=2.3)
    base = PRESETS[preset]
    # keep the preset's zeros, use distinctive values for the terms it switches on
    chosen = {k: (weights[k] if base[k] > 0 else 0.0) for k in weights}
    torch.manual_seed(0)
    model = S4Rec(split.num_items, tiny_config(preset=preset, loss=loss, **chosen))
    g = torch.Generator().manual_seed(0)
    terms = model(split.train_inputs[:32], split.train_targets[:32], split.user_items[:32], heads[:32], g)
    assert set(terms) - {"loss"} == EXPECTED_TERMS[preset]
    expected = sum(
        (terms[name] if WEIGHT_OF[name] is None else chosen[WEIGHT_OF[name]] * terms[name])
        for name in EXPECTED_TERMS[preset]
    )
    torch.testing.assert_close(terms["loss"], expected)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()


def test_adversary_gradient_reaches_encoder_reversed(tiny_batch):
    """d(lam * L_Adv)/d(encoder) is exactly minus the gradient without the reversal layer."""
    split, heads = tiny_batch
    torch.manual_seed(0)
    model = S4Rec(split.num_items, tiny_config(preset="s4rec-no-csd", dropout=0.0))
    model.train()

    def encoder_and_classifier_grads(scale: float):
        model.zero_grad(set_to_none=True)
        model.adversary.set_scale(scale)
        g = torch.Generator().manual_seed(0)
        terms = model(split.train_inputs, split.train_targets, split.user_items, heads, g)
        terms["adv"].backward()
        enc = torch.cat([p.grad.flatten() for p in model.encoder.parameters() if p.grad is not None])
        cls = torch.cat([p.grad.flatten() for p in model.adversary.parameters() if p.grad is not None])
        return enc, cls

    enc_rev, cls_rev = encoder_and_classifier_grads(1.0)
    enc_plain, cls_plain = encoder_and_classifier_grads(-1.0)  # scale -1: gradient passes unchanged
    assert enc_rev.abs().sum() > 0
    torch.testing.assert_close(enc_rev, -enc_plain)
    torch.testing.assert_close(cls_rev, cls_plain)


def test_training_end_to_end(tmp_path):
    config = tiny_config(preset="s4rec", epochs=6, lr=5e-3)
    results = train_script.train(config, tmp_path, quiet=True)
    losses = [h["losses"]["loss"] for h in results["history"]]
    assert losses[-1] < losses[0]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["test"]) == {"HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20"}
    assert all(0.0 <= v <= 1.0 for v in saved["test"].values())
    for key in ("config", "git_commit", "history", "seconds_per_epoch", "best_epoch", "valid"):
        assert key in saved
    assert saved["history"][0]["valid"]["NDCG@20"] >= 0
    assert (tmp_path / "best.pt").exists() and (tmp_path / "train.log").exists()
    model = load_checkpoint(tmp_path / "best.pt")
    assert model.config.preset == "s4rec"

    import report

    table = report.main([str(tmp_path / "results.json")])
    row = table.splitlines()[-1]
    assert "| generated | s4rec | bce | 0 |" in row
    assert f"{saved['test']['NDCG@20']:.4f}" in row


def test_resume_matches_uninterrupted_run(tmp_path):
    config = tiny_config(preset="s4rec", epochs=3, seed=3)
    full = train_script.train(config, tmp_path / "full", quiet=True)
    partial = train_script.train(config, tmp_path / "resumed", quiet=True, max_epochs_this_call=2)
    assert partial == {"interrupted_at_epoch": 2}
    resumed = train_script.train(config, tmp_path / "resumed", resume=True, quiet=True)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert full["test"] == resumed["test"]
    assert [h["losses"] for h in full["history"]] == [h["losses"] for h in resumed["history"]]


def test_cli_default_config_values():
    args = train_script.parse_args(["--preset", "cl4srec", "--loss", "ce"])
    values = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    config = TrainConfig(**values)
    assert (config.lr, config.batch_size, config.dropout, config.num_prototypes, config.hidden_size) == (
        1e-3, 512, 0.5, 128, 64
    )
    assert (config.alpha, config.beta1, config.beta2, config.lam) == (0.0, 0.1, 0.0, 0.0)
    assert config.loss == "ce"


def test_bad_preset_is_rejected():
    with pytest.raises(ValueError, match="preset must be one of"):
        TrainConfig(preset="nope")


def test_headtail_study_writes_json_and_figures(tmp_path):
    import headtail

    runs = []
    for preset in ("s4rec", "s4rec-no-gr"):
        run = tmp_path / preset
        train_script.train(tiny_config(preset=preset, epochs=1), run, quiet=True)
        runs.append(str(run))
    results = headtail.main(["--runs", *runs, "--output", str(tmp_path / "study")])
    assert [r["preset"] for r in results] == ["s4rec", "s4rec-no-gr"]
    for r in results:
        rates = r["head_rate"]["per_cluster"]
        assert rates and all(0.0 <= x <= 1.0 for x in rates)
        assert sum(r["head_rate"]["cluster_sizes"]) == 160
        assert r["metrics"]["num_head"] + r["metrics"]["num_tail"] == 160
        assert set(r["metrics"]["head"]) == set(r["metrics"]["all"])
    saved = json.loads((tmp_path / "study" / "headtail.json").read_text())
    assert saved == results
    pytest.importorskip("matplotlib")
    assert (tmp_path / "study" / "head_rate_boxplot.png").stat().st_size > 0
    assert (tmp_path / "study" / "headtail_metrics.png").stat().st_size > 0
