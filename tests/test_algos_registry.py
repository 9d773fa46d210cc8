"""The registry's one calling convention, its errors, and the algorithms' config section."""

from __future__ import annotations

import pytest
import torch

from guiagent.algos import AdvantageBatch, advantage_names, get_advantage, get_loss, loss_names, registry
from guiagent.algos.config import AlgoConfig
from guiagent.config import dump_config, load_config, parse_config
from guiagent.errors import ConfigError


def test_builtins_are_registered():
    assert advantage_names() == ["gigpo", "grpo", "hi_agent", "rloo", "uis1"]
    assert loss_names() == ["ppo_clip"]


def test_unknown_name_lists_known_names():
    with pytest.raises(ConfigError, match="unknown advantage estimator 'gpro'; known: gigpo, grpo, hi_agent, rloo, uis1"):
        get_advantage("gpro")
    with pytest.raises(ConfigError, match="known: ppo_clip"):
        get_loss("ppo")


def test_registering_a_name_twice_raises(monkeypatch):
    monkeypatch.setattr(registry, "_ADVANTAGES", dict(registry._ADVANTAGES))

    @registry.register_advantage("test_only")
    def first(batch):
        return batch.rewards

    assert get_advantage("test_only") is first
    with pytest.raises(ValueError, match="already registered"):
        registry.register_advantage("test_only")(first)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_advantage("grpo")(first)


def test_every_estimator_follows_the_calling_convention():
    # Two groups of two 2-step trajectories, one patched row; every optional field set.
    n = 8
    batch = AdvantageBatch(
        rewards=torch.tensor([1.0, 0.0, 0.5, 0.5, 0.0, 1.0, 0.2, 0.1]),
        group_ids=torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]),
        traj_ids=torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]),
        step_ids=torch.tensor([0, 1] * 4),
        mask=torch.tensor([True, True, True, False, True, True, True, True]),
        matched=torch.tensor([True, False, True, True, True, True, False, True]),
        anchor_ids=torch.tensor([0, 1, 0, 2, 3, 4, 3, 4]),
    )
    for name in advantage_names():
        adv = get_advantage(name)(batch)
        assert adv.shape == (n,) and adv.dtype == torch.float32, name
        assert adv[3].item() == 0.0, f"{name}: a masked row must get no advantage"
        assert bool(torch.isfinite(adv).all())


def test_config_checks_names_and_options(tmp_path):
    cfg = parse_config({"advantage": "gigpo", "advantage_options": {"gamma": 0.9, "norm": "mean"},
                        "loss_options": {"dual_clip": None, "kl_coef": 0.01}}, AlgoConfig)
    path = tmp_path / "algo.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path, AlgoConfig) == cfg
    with pytest.raises(ConfigError, match=r"advantage_options: unknown option.s. gama \(did you mean 'gamma'\?\); "
                                          "valid: gamma, omega, norm, epsilon"):
        parse_config({"advantage": "gigpo", "advantage_options": {"gama": 0.9}}, AlgoConfig)
    # Tensors are not options: they are positional arguments of the loss.
    with pytest.raises(ConfigError, match="unknown option.s. ref_logprobs"):
        parse_config({"loss_options": {"ref_logprobs": 1.0}}, AlgoConfig)
    with pytest.raises(ConfigError, match="unknown advantage estimator 'ppo'"):
        parse_config({"advantage": "ppo"}, AlgoConfig)
    with pytest.raises(ConfigError, match=r"replay.capasity: unknown key \(did you mean 'capacity'\?\)"):
        parse_config({"replay": {"capasity": 4}}, AlgoConfig)


def test_options_are_checked_against_the_annotations():
    """Before, only the names were checked: ``gamma="high"`` passed and failed inside the estimator."""
    gigpo = get_advantage("gigpo")
    assert registry.check_options(gigpo, {"gamma": "0.5", "episode_stats": "steps"}, "--option") == {
        "gamma": 0.5, "episode_stats": "steps"}
    with pytest.raises(ConfigError, match=r"^--option\.gamma: Input should be a valid number"):
        registry.check_options(gigpo, {"gamma": "high"}, "--option")
    with pytest.raises(ConfigError, match=r"^--option\.episode_stats: Input should be 'trajectories' or 'steps'"):
        registry.check_options(gigpo, {"episode_stats": "rows"}, "--option")
    with pytest.raises(ConfigError, match=r"^<config>: loss_options\.clip_low: Input should be a valid number"):
        parse_config({"loss_options": {"clip_low": [0.2]}}, AlgoConfig)
    # Options without an annotation take any value; options without a default are required.
    model = registry.options_model(lambda batch, *, free, tuned=0.5: batch)
    assert model(free=[1, "x"]).free == [1, "x"]
    with pytest.raises(ValueError, match="free"):
        model()


def test_config_options_drive_the_estimator():
    cfg = AlgoConfig(advantage="grpo", advantage_options={"norm": "mean"})
    batch = AdvantageBatch(torch.tensor([1.0, 0.0]), torch.zeros(2, dtype=torch.long), torch.arange(2),
                           torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.bool))
    assert get_advantage(cfg.advantage)(batch, **cfg.advantage_options).tolist() == [0.5, -0.5]


def test_replay_config_builds_a_buffer():
    from guiagent.algos.replay import ReplayBuffer

    buffer = ReplayBuffer(**AlgoConfig(replay={"enabled": True, "capacity": 4}).replay.model_dump())
    assert buffer.enabled and buffer.capacity == 4 and buffer.success_threshold == 0.1
