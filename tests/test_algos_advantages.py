"""Advantage estimators against numbers worked out by hand, plus property tests.

Conventions used in the comments: "std" is the Bessel-corrected std, sqrt(Σ(x - mean)² / (n - 1));
for two members it is |a - b| / √2, so a two-member group always normalises to ±1/√2 = ±0.70711.
Epsilon (1e-6) is negligible at the 1e-4 tolerance used here.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from guiagent.algos import AdvantageBatch, get_advantage
from guiagent.algos.advantages import foresight_reward, uis1_returns
from guiagent.algos.anchors import anchor_key_from_a11y
from guiagent.algos.batch import dense_ids, discounted_returns
from guiagent.errors import DataError
from guiagent.types import Observation, Step, Trajectory

R2 = 1 / math.sqrt(2)  # 0.70711


def make_batch(rows, matched=None, anchors=None):
    """rows: (group, traj, step, reward, trainable) tuples."""
    g, t, s, r, m = zip(*rows)
    long = lambda xs: torch.tensor(xs, dtype=torch.long)
    return AdvantageBatch(
        rewards=torch.tensor(r, dtype=torch.float32),
        group_ids=long(g),
        traj_ids=long(t),
        step_ids=long(s),
        mask=torch.tensor(m, dtype=torch.bool),
        matched=None if matched is None else torch.tensor(matched, dtype=torch.bool),
        anchor_ids=None if anchors is None else dense_ids(anchors),
    )


def outcome_batch(groups):
    """One single-step trajectory per reward; ``groups`` is a list of reward lists."""
    rows, traj = [], 0
    for g, rewards in enumerate(groups):
        for r in rewards:
            rows.append((g, traj, 0, r, True))
            traj += 1
    return make_batch(rows)


def approx(values, expected, tol=1e-4):
    assert values.tolist() == pytest.approx(expected, abs=tol)


# --- GRPO ----------------------------------------------------------------------------------------------


def test_grpo_conventions_example():
    # Rewards [1, 0, 0, 1]: mean 0.5, std = sqrt(4 * 0.25 / 3) = 0.57735 → ±0.5 / 0.57735 = ±0.86603.
    batch = outcome_batch([[1, 0, 0, 1]])
    approx(get_advantage("grpo")(batch), [0.86603, -0.86603, -0.86603, 0.86603])
    # Mean-only: ±0.5.
    approx(get_advantage("grpo")(batch, norm="mean"), [0.5, -0.5, -0.5, 0.5])


def test_grpo_single_member_and_constant_groups_are_zero():
    # Group 0 has one member (no peer to compare with) → 0; group 1 is all-equal → exactly 0.
    batch = outcome_batch([[0.7], [0.3, 0.3, 0.3]])
    for norm in ("std", "mean"):
        out = get_advantage("grpo")(batch, norm=norm)
        assert out.tolist() == [0.0, 0.0, 0.0, 0.0]


def test_grpo_counts_each_trajectory_once_and_broadcasts_to_its_steps():
    # Trajectory 0 (2 steps, rewards 0 and 1: total 1) vs trajectory 1 (3 steps, all 0: total 0).
    # Two trajectories → ±1/√2 on every step, whatever the step counts (per-row stats would give
    # mean 0.2 over 5 rows instead). The masked row of trajectory 1 gets 0.
    batch = make_batch([(0, 0, 0, 0, True), (0, 0, 1, 1, True),
                        (0, 1, 0, 0, True), (0, 1, 1, 0, False), (0, 1, 2, 0, True)])
    approx(get_advantage("grpo")(batch), [R2, R2, -R2, 0.0, -R2])


def test_grpo_groups_are_independent():
    # Group 0: [1, 0] → ±0.70711. Group 1: [2, 4, 6]: mean 4, std 2 → [-1, 0, 1].
    approx(get_advantage("grpo")(outcome_batch([[1, 0], [2, 4, 6]])), [R2, -R2, -1, 0, 1])


# --- RLOO ----------------------------------------------------------------------------------------------


def test_rloo_leave_one_out():
    # [1, 0, 0, 1]: A_0 = 1 - (0 + 0 + 1)/3 = 2/3, A_1 = 0 - (1 + 0 + 1)/3 = -2/3.
    approx(get_advantage("rloo")(outcome_batch([[1, 0, 0, 1]])), [2 / 3, -2 / 3, -2 / 3, 2 / 3])
    # [3, 1]: 3 - 1 = 2, 1 - 3 = -2. A single member has no other member → 0.
    approx(get_advantage("rloo")(outcome_batch([[3, 1], [5]])), [2, -2, 0])


# --- UI-S1 ---------------------------------------------------------------------------------------------
# One expert trajectory with 4 steps, N = 3 rollouts, step reward 0.1·fmt + 0.4·fmt·type + 0.5·fmt·type·acc:
#   A: steps 0..3, step 1 mismatched (type right, args wrong: r = 0.5) and patched (context, masked);
#      rewards [1, 0.5, 1, 1], matched [T, F, T, T].
#   B: early mismatch at step 1 (format only: r = 0.1), patches used up, so it ends there;
#      rewards [1, 0.1], matched [T, F].
#   C: all 4 steps matched, rewards [1, 1, 1, 1].

UIS1_ROWS = [
    (0, 0, 0, 1.0, True), (0, 0, 1, 0.5, False), (0, 0, 2, 1.0, True), (0, 0, 3, 1.0, True),
    (0, 1, 0, 1.0, True), (0, 1, 1, 0.1, True),
    (0, 2, 0, 1.0, True), (0, 2, 1, 1.0, True), (0, 2, 2, 1.0, True), (0, 2, 3, 1.0, True),
]
UIS1_MATCHED = [True, False, True, True, True, False, True, True, True, True]


def test_uis1_returns_with_patch_and_early_mismatch():
    batch = make_batch(UIS1_ROWS, matched=UIS1_MATCHED)
    # γ = 0.5, t_end = first mismatch at or after t, included (paper).
    # A: R3 = 1; R2 = 1 + 0.5·1 = 1.5; R1 = 0.5 (the mismatch closes its own segment); R0 = 1 + 0.5·0.5 = 1.25.
    # B: R1 = 0.1; R0 = 1 + 0.5·0.1 = 1.05.
    # C: R3 = 1; R2 = 1.5; R1 = 1.75; R0 = 1.875.
    approx(uis1_returns(batch), [1.25, 0.5, 1.5, 1.0, 1.05, 0.1, 1.875, 1.75, 1.5, 1.0])
    # Released-code variant: the mismatch's reward does not flow back: A R0 = 1, B R0 = 1.
    approx(uis1_returns(batch, include_mismatch=False), [1.0, 0.5, 1.5, 1.0, 1.0, 0.1, 1.875, 1.75, 1.5, 1.0])


def test_uis1_advantages_by_hand():
    batch = make_batch(UIS1_ROWS, matched=UIS1_MATCHED)
    # Episode level, totals R(τ) = Σ r: A 3.5, B 1.1, C 4.0; mean 2.86667;
    #   deviations 0.63333, -1.76667, 1.13333; std = sqrt((0.40111 + 3.12111 + 1.28444)/2) = 1.55027
    #   → A^E = 0.40853, -1.13958, 0.73106.
    # Step level, groups (task, expert step) over trainable rows:
    #   step 0: returns 1.25, 1.05, 1.875; mean 1.39167; std = sqrt((0.02007 + 0.11674 + 0.23361)/2) = 0.43036
    #           → -0.32918, -0.79391, 1.12310
    #   step 1: A masked; B 0.1, C 1.75 → -0.70711, +0.70711
    #   step 2: A 1.5, C 1.5 (all equal) → 0, 0;  step 3: A 1, C 1 → 0, 0
    # A = A^E + 1·A^S, patched row 0.
    expected = [0.40853 - 0.32918, 0.0, 0.40853, 0.40853,
                -1.13958 - 0.79391, -1.13958 - R2,
                0.73106 + 1.12310, 0.73106 + R2, 0.73106, 0.73106]
    approx(get_advantage("uis1")(batch), expected)
    # ω = 0 leaves only the episode level.
    approx(get_advantage("uis1")(batch, omega=0.0), [0.40853, 0, 0.40853, 0.40853, -1.13958, -1.13958,
                                                    0.73106, 0.73106, 0.73106, 0.73106])


def test_uis1_released_code_variants():
    batch = make_batch(UIS1_ROWS, matched=UIS1_MATCHED)
    # include_mismatch=False: step-0 returns become 1.0, 1.0, 1.875; mean 1.29167;
    #   std = sqrt((0.08507 + 0.08507 + 0.34028)/2) = 0.50518 → -0.57735, -0.57735, 1.15470.
    out = get_advantage("uis1")(batch, include_mismatch=False)
    approx(out[[0, 4, 6]], [0.40853 - 0.57735, -1.13958 - 0.57735, 0.73106 + 1.15470])
    # episode_score="immediate": each trainable row's r_t normalised over all 9 trainable rows of the task:
    #   rewards eight 1.0 and one 0.1: mean 0.9, std = sqrt((8·0.01 + 0.64)/8) = 0.3 → 1.0 → +0.33333, 0.1 → -2.66667.
    out = get_advantage("uis1")(batch, episode_score="immediate")
    approx(out[[2, 5]], [0.33333 + 0.0, -2.66667 - R2])


def test_uis1_needs_matched_flags():
    with pytest.raises(DataError, match="matched"):
        get_advantage("uis1")(outcome_batch([[1, 0]]))


# --- GiGPO ---------------------------------------------------------------------------------------------


def _tree(checked: str, clock: str, bounds: str, focused: str) -> str:
    return (
        '<hierarchy rotation="0">'
        f'<node index="0" package="com.android.systemui" class="android.widget.TextView" text="{clock}" bounds="[0,0][200,60]"/>'
        f'<node index="1" package="com.android.settings" class="android.widget.Switch" resource-id="wifi" '
        f'checked="{checked}" focused="{focused}" bounds="{bounds}"/>'
        "</hierarchy>"
    )


def test_gigpo_repeated_state_inside_one_trajectory_joins_its_group():
    # Screens: s0 = Wi-Fi settings with the switch off, s1 = a detail page, s2 = switch on, s3 = elsewhere.
    # Trajectory X visits s0, s1, s0 (again, with a different clock, bounds jitter and focus), s2 and
    # succeeds (reward 1 on the last step); Y visits s0, s1, s3 and fails.
    s0 = _tree("false", "9:41", "[0,100][1080,200]", "false")
    s0_again = _tree("false", "9:42", "[0,104][1080,204]", "true")
    s1, s2, s3 = "<hierarchy><node text='detail'/></hierarchy>", _tree("true", "9:43", "[0,100][1080,200]", "false"), "x"
    keys = [anchor_key_from_a11y(t) for t in (s0, s1, s0_again, s2, s0, s1, s3)]
    assert keys[0] == keys[2] == keys[4] and keys[1] == keys[5] and len(set(keys)) == 4
    batch = make_batch([(0, 0, 0, 0, True), (0, 0, 1, 0, True), (0, 0, 2, 0, True), (0, 0, 3, 1, True),
                        (0, 1, 0, 0, True), (0, 1, 1, 0, True), (0, 1, 2, 0, True)], anchors=keys)
    # γ = 0.5: X returns R3 = 1, R2 = 0.5, R1 = 0.25, R0 = 0.125; Y returns all 0.
    approx(discounted_returns(batch, 0.5), [0.125, 0.25, 0.5, 1, 0, 0, 0])
    # Episode: X total 1, Y total 0 → ±0.70711.
    # Step groups: s0 = {X0 0.125, X2 0.5, Y0 0}: mean 0.20833, dev -0.08333, 0.29167, -0.20833,
    #   std = sqrt((0.00694 + 0.08507 + 0.04340)/2) = 0.26021 → -0.32026, 1.12090, -0.80064.
    #   s1 = {X1 0.25, Y1 0} → ±0.70711;  s2 = {X3}, s3 = {Y2}: single members → 0.
    expected = [R2 - 0.32026, 2 * R2, R2 + 1.12090, R2, -R2 - 0.80064, -2 * R2, -R2]
    approx(get_advantage("gigpo")(batch, gamma=0.5), expected)
    # F = 1 (mean-only): episode ±0.5; s0 → -0.08333, 0.29167, -0.20833; s1 → ±0.125.
    approx(get_advantage("gigpo")(batch, gamma=0.5, norm="mean"),
           [0.5 - 0.08333, 0.625, 0.5 + 0.29167, 0.5, -0.5 - 0.20833, -0.625, -0.5])


def test_gigpo_episode_stats_over_trajectories_or_step_rows():
    # One group: X has 1 step (reward 1, total 1); Y has 3 steps (rewards 0, 0, 0, total 0). Both start on
    # the same screen s0; Y then visits y1, y2. Returns: X R0 = 1, Y all 0 (any γ).
    batch = make_batch([(0, 0, 0, 1, True), (0, 1, 0, 0, True), (0, 1, 1, 0, True), (0, 1, 2, 0, True)],
                       anchors=["s0", "s0", "y1", "y2"])
    # Step level: s0 = {X0 1, Y0 0} → ±0.70711; y1, y2 single members → 0.
    # Paper (default): episode stats over the 2 trajectories, totals [1, 0] → X +0.70711, Y -0.70711.
    approx(get_advantage("gigpo")(batch), [R2 + R2, -R2 - R2, -R2, -R2])
    # Released code: stats over the 4 step rows, each carrying its trajectory's total: [1, 0, 0, 0],
    #   mean 0.25, deviations 0.75, -0.25 ×3, std = sqrt((0.5625 + 3·0.0625)/3) = sqrt(0.25) = 0.5
    #   → X 0.75/0.5 = +1.5, Y -0.25/0.5 = -0.5: the 3-step failure pulls the mean down.
    approx(get_advantage("gigpo")(batch, episode_stats="steps"), [1.5 + R2, -0.5 - R2, -0.5, -0.5])
    # F = 1: trajectories → ±0.5; step rows → X 1 - 0.25 = 0.75, Y -0.25; s0 → ±0.5.
    approx(get_advantage("gigpo")(batch, norm="mean"), [1.0, -1.0, -0.5, -0.5])
    approx(get_advantage("gigpo")(batch, norm="mean", episode_stats="steps"), [1.25, -0.75, -0.25, -0.25])
    # Only trainable rows count: with Y's last row masked the rows are [1, 0, 0]: mean 1/3,
    #   std = sqrt((4/9 + 1/9 + 1/9)/2) = 0.57735 → X (2/3)/0.57735 = 1.15470, Y -(1/3)/0.57735 = -0.57735.
    masked = make_batch([(0, 0, 0, 1, True), (0, 1, 0, 0, True), (0, 1, 1, 0, True), (0, 1, 2, 0, False)],
                        anchors=["s0", "s0", "y1", "y2"])
    approx(get_advantage("gigpo")(masked, omega=0.0, episode_stats="steps"),
           [1.15470, -0.57735, -0.57735, 0.0])
    with pytest.raises(ValueError, match="episode_stats"):
        get_advantage("gigpo")(batch, episode_stats="rows")


def test_gigpo_default_gamma_is_0_95():
    batch = make_batch([(0, 0, 0, 0, True), (0, 0, 1, 0, True), (0, 0, 2, 1, True)], anchors=["a", "b", "c"])
    # R = [0.95², 0.95, 1] = [0.9025, 0.95, 1].
    approx(discounted_returns(batch, 0.95), [0.9025, 0.95, 1.0])


def test_gigpo_needs_anchor_ids():
    with pytest.raises(DataError, match="anchor"):
        get_advantage("gigpo")(outcome_batch([[1, 0]]))


# --- Hi-Agent ------------------------------------------------------------------------------------------


def test_hi_agent_unexecutable_subgoal_gets_negative_advantage():
    # One state, G = 4 high-level subgoals, each executed by 4 low-level samples:
    #   g1 "tap Wi-Fi"              → low level right 4/4 → reward 1 + 1.00 = 2.00
    #   g2 "open network settings"  → right 3/4           → 1 + 0.75 = 1.75
    #   g3 "toggle the switch"      → right 4/4           → 2.00
    #   g4 "press the Airplane key" (no such control)     → right 0/4 → 1 + 0 = 1.00
    rewards = [foresight_reward(True, [True] * 4), foresight_reward(True, [True, True, True, False]),
               foresight_reward(True, [True] * 4), foresight_reward(True, [False] * 4)]
    assert rewards == [2.0, 1.75, 2.0, 1.0]
    # A second state (step 1) with two subgoals, one unparseable (reward 0), normalised separately.
    rewards += [foresight_reward(True, [True, False]), foresight_reward(False, [])]
    assert rewards[4:] == [1.5, 0.0]
    batch = make_batch([(0, i, 0, r, True) for i, r in enumerate(rewards[:4])]
                       + [(0, 4, 1, rewards[4], True), (0, 5, 1, rewards[5], True)])
    # State 0: mean 1.6875, dev 0.3125, 0.0625, 0.3125, -0.6875;
    #   std = sqrt((0.09766 + 0.00391 + 0.09766 + 0.47266)/3) = 0.47324 → 0.66034, 0.13207, 0.66034, -1.45275.
    # State 1: two members → ±0.70711.
    out = get_advantage("hi_agent")(batch)
    approx(out, [0.66034, 0.13207, 0.66034, -1.45275, R2, -R2])
    assert out[3] < 0


def test_foresight_reward_needs_low_level_samples():
    with pytest.raises(ValueError):
        foresight_reward(True, [])


# --- The batch contract --------------------------------------------------------------------------------


def _traj(episode_id, rewards, patched=(), matched=None):
    obs = Observation(width=10, height=10, screenshot_path="s.png")
    steps = [Step(index=i, observation=obs, action=None, reward=r, patched=i in patched,
                  matched=None if matched is None else matched[i]) for i, r in enumerate(rewards)]
    return Trajectory(episode_id=episode_id, task_id="t", seed=0, env_id="sim", policy_version="base", steps=steps)


def test_from_trajectories_flattens_groups():
    groups = [[_traj("a", [1.0, 0.5], patched={1}, matched=[True, False]), _traj("b", [0.1], matched=[False])],
              [_traj("c", [0.0], matched=[True])]]
    batch = AdvantageBatch.from_trajectories(groups)
    assert batch.group_ids.tolist() == [0, 0, 0, 1]
    assert batch.traj_ids.tolist() == [0, 0, 1, 2]
    assert batch.step_ids.tolist() == [0, 1, 0, 0]
    assert batch.mask.tolist() == [True, False, True, True]
    assert batch.matched.tolist() == [True, False, False, True]
    assert batch.rewards.tolist() == pytest.approx([1.0, 0.5, 0.1, 0.0])


def test_from_trajectories_rejects_missing_reward():
    bad = _traj("a", [1.0])
    bad = Trajectory(**{**bad.__dict__, "steps": (Step(index=0, observation=bad.steps[0].observation, action=None),)})
    with pytest.raises(DataError, match="a step 0"):
        AdvantageBatch.from_trajectories([[bad]])


def test_batch_rejects_nan_reward_trajectory_in_two_groups_and_repeated_step():
    with pytest.raises(DataError, match="record 1"):
        make_batch([(0, 0, 0, 1.0, True), (0, 1, 0, float("nan"), True)])
    with pytest.raises(DataError, match="groups"):
        make_batch([(0, 0, 0, 1.0, True), (1, 0, 1, 1.0, True)])
    with pytest.raises(DataError, match="step 0 twice"):
        make_batch([(0, 0, 0, 1.0, True), (0, 0, 0, 1.0, True)])


def test_empty_batch_gives_empty_advantages():
    empty = AdvantageBatch(torch.zeros(0), *(torch.zeros(0, dtype=torch.long),) * 3, torch.zeros(0, dtype=torch.bool),
                           matched=torch.zeros(0, dtype=torch.bool), anchor_ids=torch.zeros(0, dtype=torch.long))
    for name in ("grpo", "rloo", "uis1", "gigpo", "hi_agent"):
        assert get_advantage(name)(empty).shape == (0,)


# --- Properties ----------------------------------------------------------------------------------------

rewards_st = st.floats(min_value=-5, max_value=5, allow_nan=False, width=32)
groups_st = st.lists(st.lists(st.lists(rewards_st, min_size=1, max_size=4), min_size=1, max_size=5), min_size=1, max_size=4)


def _multi_step_batch(groups, seed=0):
    """groups: [[trajectory rewards per step]]; deterministic matched flags and anchors from the rewards."""
    rows, matched, anchors, traj = [], [], [], 0
    for g, trajs in enumerate(groups):
        for rewards in trajs:
            for s, r in enumerate(rewards):
                rows.append((g, traj, s, r, True))
                matched.append(r >= 0)
                anchors.append((g, round(r) % 3))
            traj += 1
    return make_batch(rows, matched=matched, anchors=anchors)


@settings(max_examples=60, deadline=None)
@given(groups_st)
def test_mean_normalised_group_advantages_sum_to_zero(groups):
    batch = _multi_step_batch(groups)
    adv = get_advantage("grpo")(batch, norm="mean")
    # One advantage per trajectory (taken at its first row) sums to 0 within each group.
    for g in range(len(groups)):
        firsts = [i for i in range(len(batch)) if batch.group_ids[i] == g and batch.step_ids[i] == 0]
        assert abs(float(adv[firsts].double().sum())) < 1e-4
    # Hi-Agent with F = 1: the rows of each (group, step) state sum to 0.
    adv = get_advantage("hi_agent")(batch, norm="mean")
    for key in set(zip(batch.group_ids.tolist(), batch.step_ids.tolist())):
        rows = [i for i in range(len(batch)) if (int(batch.group_ids[i]), int(batch.step_ids[i])) == key]
        assert abs(float(adv[rows].double().sum())) < 1e-4


@settings(max_examples=40, deadline=None)
@given(groups_st, st.randoms(use_true_random=False))
def test_permuting_trajectories_permutes_advantages(groups, rnd):
    batch = _multi_step_batch(groups)
    perm = list(range(len(batch)))
    rnd.shuffle(perm)
    shuffled = batch.select(torch.tensor(perm))
    for name in ("grpo", "rloo", "uis1", "gigpo", "hi_agent"):
        original = get_advantage(name)(batch)
        assert get_advantage(name)(shuffled).tolist() == pytest.approx(original[perm].tolist(), abs=1e-5), name


@settings(max_examples=40, deadline=None)
@given(rewards_st, st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_constant_and_single_member_groups_have_zero_finite_advantages(value, sizes):
    batch = _multi_step_batch([[[value]] * n for n in sizes])
    for name in ("grpo", "rloo", "uis1", "gigpo", "hi_agent"):
        for options in ({}, {"norm": "mean"}) if name != "rloo" else ({},):
            adv = get_advantage(name)(batch, **options)
            assert bool(torch.isfinite(adv).all()), name
            assert adv.abs().max().item() == 0.0, name


def test_batch_rejects_wrong_shapes_and_dtypes():
    ids = torch.zeros(2, dtype=torch.long)
    ok = torch.ones(2, dtype=torch.bool)
    with pytest.raises(DataError, match="rewards: expected a 1-D tensor"):
        AdvantageBatch(torch.zeros(2, 1), ids, ids, ids, ok)
    with pytest.raises(DataError, match="traj_ids: expected a 1-D tensor of length 2"):
        AdvantageBatch(torch.zeros(2), ids, torch.zeros(3, dtype=torch.long), ids, ok)
    with pytest.raises(DataError, match="mask: expected a bool tensor"):
        AdvantageBatch(torch.zeros(2), ids, torch.arange(2), ids, torch.ones(2))
    with pytest.raises(DataError, match="group_ids: expected an integer tensor"):
        AdvantageBatch(torch.zeros(2), torch.zeros(2), torch.arange(2), ids, ok)
