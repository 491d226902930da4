"""Evaluation: likelihood bounds (bits per dimension), sampling and sample grids,
two-sample metrics, exact GMM metrics and the Fréchet classifier distance.

from eqx_impl import evaluation as ev
nll = ev.dataset_bpd(model, dataset, key=key, schedule=schedule)      # nll.bpd.mean
prof = ev.loss_profile(model, dataset.model_data("test"), key=key, logsnr_min=-10.0,
                       logsnr_max=10.0, weighting=w)                      # prof.diffusion_bpd
ode = ev.ode_nll(model, dataset.test, key=key, sigma_min=0.002, sigma_max=80.0,
                 num_levels=dataset.num_levels)                          # ode.bpd.mean
x = ev.generate(model, 64, dataset.shape, key=key, sampler="heun")
ev.save_grid(x, "samples.png", num_levels=dataset.num_levels)
clf = ev.load_classifier()                                              # cached
fd = ev.frechet_classifier_distance(clf, x, dataset.model_data("test"))
"""

from eqx_impl.evaluation.estimate import Estimate, estimate, map_batches
from eqx_impl.evaluation.frechet import (
    Classifier,
    ClassifierConfig,
    classifier_accuracy,
    classifier_path,
    feature_statistics,
    frechet_classifier_distance,
    frechet_distance,
    load_classifier,
    train_classifier,
)
from eqx_impl.evaluation.generate import SAMPLERS, generate, sampler_steps, to_levels
from eqx_impl.evaluation.gmm import BayesGap, bayes_gap, exact_nll, mixture_from_dataset
from eqx_impl.evaluation.grids import image_grid, save_grid
from eqx_impl.evaluation.likelihood import (
    NegativeELBO,
    dataset_bpd,
    negative_elbo,
    negative_elbo_terms,
    stratified_times,
)
from eqx_impl.evaluation.loss_profile import LossProfile, loss_profile, plot_loss_profile
from eqx_impl.evaluation.metrics import (
    PermutationTest,
    median_bandwidth,
    mmd2,
    permutation_test,
    sliced_wasserstein,
)
from eqx_impl.evaluation.ode_likelihood import EXACT_MAX_DIM, ODENegativeLogLikelihood, ode_nll

__all__ = [
    "EXACT_MAX_DIM",
    "SAMPLERS",
    "BayesGap",
    "Classifier",
    "ClassifierConfig",
    "Estimate",
    "LossProfile",
    "NegativeELBO",
    "ODENegativeLogLikelihood",
    "PermutationTest",
    "bayes_gap",
    "classifier_accuracy",
    "classifier_path",
    "dataset_bpd",
    "estimate",
    "exact_nll",
    "feature_statistics",
    "frechet_classifier_distance",
    "frechet_distance",
    "generate",
    "image_grid",
    "load_classifier",
    "loss_profile",
    "map_batches",
    "median_bandwidth",
    "mixture_from_dataset",
    "mmd2",
    "negative_elbo",
    "negative_elbo_terms",
    "ode_nll",
    "permutation_test",
    "plot_loss_profile",
    "sampler_steps",
    "save_grid",
    "sliced_wasserstein",
    "stratified_times",
    "to_levels",
    "train_classifier",
]
