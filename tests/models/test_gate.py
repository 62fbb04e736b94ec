"""The promotion gate: bootstrap intervals against the base model and the active version decide."""

from wikiref.models.gate import GateDelta, decide_promotion

GAIN = GateDelta(0.05, 0.02, 0.08)
NOISE = GateDelta(0.01, -0.005, 0.025)
LOSS = GateDelta(-0.03, -0.05, -0.01)


def test_the_gate_needs_a_ci_above_zero_vs_base_and_not_below_zero_vs_active() -> None:
    assert decide_promotion(metric="ndcg@10", vs_base=GAIN, active_name="base", vs_active=None).promote
    noise = decide_promotion(metric="ndcg@10", vs_base=NOISE, active_name="base", vs_active=None)
    assert not noise.promote
    assert noise.reason == (
        "ndcg@10 vs base +0.0100 [95% CI -0.0050, +0.0250]: the lower bound is not above +0.0000, "
        "so the gain may be noise or a loss; stays candidate"
    )
    assert not decide_promotion(metric="ndcg@10", vs_base=LOSS, active_name=None, vs_active=None).promote
    behind = decide_promotion(metric="ndcg@10", vs_base=GAIN, active_name="ft-1", vs_active=LOSS)
    assert not behind.promote and "vs active ft-1 -0.0300" in behind.reason
    # A tie with the active version is allowed (lower bound 0); settings can relax either bound.
    tie = GateDelta(0.0, 0.0, 0.01)
    assert decide_promotion(metric="ndcg@10", vs_base=GAIN, active_name="ft-1", vs_active=tie).promote
    assert decide_promotion(
        metric="ndcg@10", vs_base=NOISE, active_name=None, vs_active=None, min_vs_base=-0.01
    ).promote
