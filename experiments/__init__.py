"""Small-scale studies of Kingma & Gao's claims (see `docs/experiments.md`).

python -m experiments.weightings   # study 1: weightings x schedules on digits and the GMM
python -m experiments.adaptive     # study 2: the adaptive schedule's estimator variance
python -m experiments.render       # JSON results -> tables and plots of docs/experiments.md
"""
