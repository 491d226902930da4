"""Float64 NumPy/SciPy reference for diffusion objectives as weighted ELBOs.

Slow and readable: every formula of SPEC §1–§5, §7, §8, checked against closed forms.
"""

from reference.analytic import GaussianData, GaussianMixture

# (further modules add their blocks below)
from reference.edm import (
    denoiser_from_eps,
    denoiser_from_F,
    denoiser_from_v,
    denoiser_from_x,
    edm_loss_weight,
    edm_precond,
    edm_sigmas,
    ve_precond,
    vp_precond,
)
from reference.elbo import (
    AugmentationDistribution,
    augmentation_distribution,
    ibp_rhs,
    truncated_kl,
    weighted_loss_integral,
)
from reference.importance import (
    Adaptive,
    AdaptiveState,
    estimator_mean,
    estimator_variance,
    optimal_proposal,
    optimal_variance,
)
from reference.learned import Learned
from reference.losses import (
    bits_per_dim,
    eps_loss,
    levels_to_unit,
    prior_kl,
    reconstruction_nll,
    vdm_continuous_loss,
    vdm_discrete_loss,
    weighted_loss,
)
from reference.ode_likelihood import dequantize, ode_bits_per_dim, ode_likelihood
from reference.parameterization import EpsModel
from reference.probe import ProbeNet
from reference.proposals import (
    AbstractProposal,
    AdaptiveProposal,
    FixedProposal,
    LearnedProposal,
    LearnedState,
)
from reference.samplers import (
    ancestral_sampler,
    ddim_sampler,
    dpm_2_sampler,
    dpmpp_2m_sampler,
    dpmpp_2m_sde_sampler,
    euler_sampler,
    heun_sampler,
)
from reference.schedules import (
    AbstractSchedule,
    Cosine,
    CosineInterpolated,
    DDPMLinear,
    EDMLogNormal,
    FlowOT,
    LinearLogSNR,
    alpha_sigma,
    logsnr_to_sigma,
    sigma_to_logsnr,
)
from reference.targets import (
    TARGETS,
    eps_from_prediction,
    prediction_from_eps,
    target_factor,
    target_value,
)
from reference.weightings import (
    EDM,
    ELBO,
    AbstractWeighting,
    EpsCosine,
    Exponential,
    Implied,
    InDI,
    MinSNR,
    Monotonic,
    Shifted,
    Sigmoid,
    is_monotonic,
)
