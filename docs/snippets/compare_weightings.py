import reference as R

lo, hi = -10.0, 10.0
data = R.GaussianData(0.5, 4)  # d = 4, s² = 0.5; Bayes-optimal model: ℓ ~ v χ²_d
m1, m2 = data.loss_mean, data.loss_second_moment
cosine = R.Cosine(lo, hi)
weightings = {
    "ELBO": R.ELBO(),
    "EpsCosine": R.EpsCosine(),
    "EDM": R.EDM(),
    "EDM-monotonic": R.Monotonic(R.EDM(), lo, hi),
    "Exponential(0.5)": R.Exponential(0.5),
    "InDI": R.InDI(),
    "MinSNR(5)": R.MinSNR(5.0),
    "Sigmoid(2)": R.Sigmoid(2.0),
}
print(f"{'weighting':<17} {'monotone':>8} {'L_w':>9} {'CV² cosine':>11} {'CV² p*':>8} {'P(t=0)':>9}")
for name, w in weightings.items():
    loss = R.estimator_mean(w, m1, lo, hi)  # the floor of this objective
    cv2_cosine = R.estimator_variance(w, cosine.density, m1, m2, lo, hi) / loss**2
    cv2_best = R.optimal_variance(w, m1, m2, lo, hi) / loss**2
    monotone = R.is_monotonic(w, lo, hi)
    mass = f"{R.augmentation_distribution(w, cosine).point_mass:9.2e}" if monotone else f"{'-':>9}"
    print(f"{name:<17} {monotone!s:>8} {loss:9.4f} {cv2_cosine:11.3f} {cv2_best:8.3f} {mass}")
