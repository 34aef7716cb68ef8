import json

import pytest
import torch

from src.ddgan.diffusion import VPSchedule
from src.ddgan.sampling import sample

REFERENCE_NAMES = {  # released name -> ours
    "a_s_cum": "sqrt_alpha_bar",
    "sigmas_cum": "sigma_bar",
    "a_s": "sqrt_alpha",
    "sigmas": "sqrt_beta",
    "posterior_variance": "posterior_variance",
    "posterior_mean_coef1": "posterior_coef_x0",
    "posterior_mean_coef2": "posterior_coef_xtp1",
    "posterior_log_variance_clipped": "posterior_log_variance",
}


@pytest.mark.parametrize("T", [1, 2, 4, 8])
def test_schedule_matches_released_coefficients(reference_dir, T):
    reference = json.loads((reference_dir / "schedule_vp.json").read_text())["T"][str(T)]
    schedule = VPSchedule(T)
    for released, ours in REFERENCE_NAMES.items():
        torch.testing.assert_close(getattr(schedule, ours), torch.tensor(reference[released]), atol=1e-6, rtol=0, msg=released)
    torch.testing.assert_close(schedule.sqrt_beta[1:] ** 2, torch.tensor(reference["betas"]), atol=1e-6, rtol=0)


def test_worked_example_T4():
    schedule = VPSchedule(4)
    torch.testing.assert_close(schedule.sqrt_beta[1:] ** 2, torch.tensor([0.4783, 0.8492, 0.9564, 0.9874]), atol=1e-4, rtol=0)
    torch.testing.assert_close(schedule.sqrt_alpha_bar[1:], torch.tensor([0.7223, 0.2805, 0.0586, 0.0066]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("t", [0, 1, 3])
def test_pairs_follow_forward_marginals(t):
    """x_t ~ q(x_t | x_0) and x_{t+1} ~ q(x_{t+1} | x_0), checked by Monte Carlo for a fixed x_0."""
    schedule, n, x0_value = VPSchedule(4), 200_000, 0.7
    x_0 = torch.full((n, 1), x0_value)
    x_t, x_tp1 = schedule.q_sample_pair(x_0, torch.full((n,), t))
    for level, x in ((t, x_t), (t + 1, x_tp1)):
        assert x.mean().item() == pytest.approx(schedule.sqrt_alpha_bar[level].item() * x0_value, abs=0.01)
        assert x.std().item() == pytest.approx(schedule.sigma_bar[level].item(), abs=0.01)


@pytest.mark.parametrize("t", [1, 2, 3])
def test_posterior_is_the_conditional_of_the_forward_pair(t):
    """Regressing x_t on x_{t+1} over forward pairs gives the posterior's coefficients and variance."""
    schedule, n, x0_value = VPSchedule(4), 400_000, -0.5
    x_t, x_tp1 = schedule.q_sample_pair(torch.full((n,), x0_value), torch.full((n,), t))
    x_t, x_tp1 = x_t.double(), x_tp1.double()
    slope = ((x_t - x_t.mean()) * (x_tp1 - x_tp1.mean())).mean() / x_tp1.var()
    intercept = x_t.mean() - slope * x_tp1.mean()
    residual_variance = (x_t - intercept - slope * x_tp1).var()
    assert slope.item() == pytest.approx(schedule.posterior_coef_xtp1[t].item(), abs=0.01)
    assert intercept.item() == pytest.approx(schedule.posterior_coef_x0[t].item() * x0_value, abs=0.01)
    assert residual_variance.item() == pytest.approx(schedule.posterior_variance[t].item(), rel=0.02)


def test_sample_posterior_has_the_analytic_mean_and_variance():
    schedule, n, t = VPSchedule(4), 200_000, 2
    x_0, x_tp1 = torch.full((n, 1), 0.3), torch.full((n, 1), -1.2)
    tt = torch.full((n,), t)
    mean, variance, log_variance = schedule.posterior_mean_variance(x_0, x_tp1, tt)
    x_t = schedule.sample_posterior(x_0, x_tp1, tt)
    assert x_t.mean().item() == pytest.approx(mean[0].item(), abs=0.01)
    assert x_t.var().item() == pytest.approx(variance[0].item(), rel=0.02)
    torch.testing.assert_close(log_variance.exp(), variance)


def test_last_step_adds_no_noise():
    schedule = VPSchedule(4)
    x_0, x_1 = torch.randn(16, 3), torch.randn(16, 3)
    x = schedule.sample_posterior(x_0, x_1, torch.zeros(16, dtype=torch.long))
    torch.testing.assert_close(x, x_0)  # coefficient of x_0 is 1 and of x_1 is 0 at t = 0


@pytest.mark.parametrize("T", [0, -1, 2.5])
def test_invalid_num_timesteps_is_rejected(T):
    with pytest.raises(ValueError, match="num_timesteps"):
        VPSchedule(T)


def test_many_timesteps_warn():
    with pytest.warns(UserWarning, match="outside the paper's regime"):
        VPSchedule(16)


def test_sampler_calls_generator_T_times_with_fresh_latents_and_decreasing_t():
    schedule, calls = VPSchedule(4), []

    def generator(x_tp1, t, z):
        calls.append((t.clone(), z.clone()))
        return torch.zeros_like(x_tp1)

    rng = torch.Generator().manual_seed(0)
    x_0, levels, predictions = sample(generator, schedule, torch.randn(5, 2), nz=3, rng=rng, return_chain=True)
    assert [int(t[0]) for t, _ in calls] == [3, 2, 1, 0]
    assert len({tuple(z.flatten().tolist()) for _, z in calls}) == 4  # a fresh z at every step
    assert len(levels) == 5 and len(predictions) == 4
    torch.testing.assert_close(x_0, torch.zeros(5, 2))  # the last step returns G's prediction


def test_sampler_is_reproducible_with_a_seeded_rng():
    schedule = VPSchedule(2)
    net = torch.nn.Linear(2 + 3, 2)

    def generator(x_tp1, t, z):
        return net(torch.cat([x_tp1, z], 1))

    draws = [sample(generator, schedule, torch.ones(4, 2), nz=3, rng=torch.Generator().manual_seed(7)) for _ in range(2)]
    torch.testing.assert_close(draws[0], draws[1])
