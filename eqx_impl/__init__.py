"""Equinox/JAX implementation of diffusion objectives as weighted ELBOs.

Same public names as `reference` (SPEC §9), plus `Learned`; per-example functions that
jit, vmap and differentiate.
"""

from typing import TYPE_CHECKING

from eqx_impl._lazy import lazy_exports

# Re-exports, imported on first use (`ex.Sigmoid` loads only eqx_impl.weightings), so that
# `python -m eqx_impl --help` and config errors come back without loading JAX.
if TYPE_CHECKING:
    from eqx_impl.analytic import GaussianData, GaussianMixture

    # (further modules add their blocks below)
    from eqx_impl.edm import (
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
    from eqx_impl.elbo import (
        AugmentationDistribution,
        augmentation_distribution,
        ibp_rhs,
        truncated_kl,
        weighted_loss_integral,
    )
    from eqx_impl.importance import (
        Adaptive,
        AdaptiveState,
        estimator_mean,
        estimator_variance,
        optimal_proposal,
        optimal_variance,
    )
    from eqx_impl.learned import Learned
    from eqx_impl.losses import (
        bits_per_dim,
        eps_loss,
        levels_to_unit,
        prior_kl,
        reconstruction_nll,
        vdm_continuous_loss,
        vdm_discrete_loss,
        weighted_loss,
    )
    from eqx_impl.models import MLP, EpsModel, UNet, count_params
    from eqx_impl.ode_likelihood import dequantize, ode_bits_per_dim, ode_likelihood
    from eqx_impl.probe import ProbeNet
    from eqx_impl.proposals import (
        AbstractProposal,
        AdaptiveProposal,
        FixedProposal,
        LearnedProposal,
        LearnedState,
    )
    from eqx_impl.samplers import (
        ancestral_sampler,
        ddim_sampler,
        dpm_2_sampler,
        dpmpp_2m_sampler,
        dpmpp_2m_sde_sampler,
        euler_sampler,
        heun_sampler,
    )
    from eqx_impl.schedules import (
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
    from eqx_impl.targets import (
        TARGETS,
        eps_from_prediction,
        prediction_from_eps,
        target_factor,
        target_value,
    )
    from eqx_impl.weightings import (
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

__getattr__, __dir__, __all__ = lazy_exports(__name__, __file__)
