"""The study of Kingma & Gao's claims (see `docs/experiments.md`).

python -m experiments.study --scale cpu   # train and score every arm, 5 seeds -> results/study.json
python -m experiments.render              # JSON -> docs/experiments.md and its plots
"""
