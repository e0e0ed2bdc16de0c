"""The sweep report: sweep directories to the paper's tables and plots, with confidence intervals over seeds.

``python report.py outputs/multirun/<date>/<time> [more sweep dirs] [--wandb]`` reads every job's
``metrics.json`` and ``.hydra/`` files (through ``labelsmooth.runs``, never the training code) and writes into the
(first) sweep directory:

* ``report.md``: the tables below, the plots, the failed / missing jobs and the duplicate runs not counted (of
  completed jobs with the same data set, swept value and seed, e.g. one job in two sweep directories, only the
  one with the most recent ``metrics.json`` counts);
* ``runs.csv`` (one row per job), ``table_<metric>.csv`` and ``best_vs_baseline_<metric>.csv``;
* ``accuracy_vs_gamma.png``, ``ece_vs_gamma.png`` (``_vs_<parameter>``), ``reliability_<dataset>.png`` (test
  split, seeds pooled, one panel per γ, before and after temperature scaling); when the runs saved them,
  ``risk_coverage_<dataset>.png`` (from ``predictions/test.npz``) and ``penultimate_<dataset>.png`` (the runs'
  ``penultimate_projection.png``); ``table_distillation_test_acc.csv`` for students that record their teacher.

Tables (Mezzini 2018, "Empirical study on label smoothing"):

* Tables 1-2: per data set (rows) and γ (columns), the best validation accuracy ``val/acc_best`` as
  ``mean ± h (n)`` over seeds, ``h = t_{0.975, n-1} · s / √n`` the half-width of the 95% Student-t confidence
  interval of the mean (``s`` the sample standard deviation; no interval for n = 1); ``↑k`` marks k seeds still
  improving at their last epoch.
* Table 3: per data set the best γ (highest mean; a tie names the values tied) against the unsmoothed value the
  jobs record (γ = 1), the relative difference ``diff % = 100 · (best - baseline) / best`` for accuracies (the
  paper's) and ``/ baseline`` for errors, and a two-sided paired t-test over the seeds both have
  (``scipy.stats.ttest_rel``). The best γ is picked on the same runs, so the p-value is optimistic.
* The same tables for the test accuracy of the selected checkpoint, the test ECE, before and after temperature
  scaling (``‡k``: k seeds whose temperature lies at a bound of its search), and, when the jobs record them, smooth
  ECE, class-wise ECE, AURC and AUGRC (lower is better); their Table 3 compares the γ with the best mean
  ``val/acc_best``, so the test split chooses nothing; student accuracy by the teacher's smoothing.

The swept parameter (``--param``) is the one key the jobs vary; any number (``smoothing.epsilon``, ``seed``) or
name works: ``--param smoothing`` compares strategies (columns ``none``, ``uniform``, ...; Table 3 against ``none``).

Modules: ``base`` (the shared vocabulary), ``jobs`` (reading run directories), ``stats``, ``tables`` (and CSVs),
``baseline``, ``distillation``, ``per_class`` (per-class test accuracy), ``markdown``, ``plots`` (metric plots,
reliability diagrams), ``risk_coverage``,
``penultimate``, ``build`` (``make_report``), ``wandb_page`` (``--wandb``), ``cli`` (``main``).

May import ``labelsmooth.runs`` (reading run directories), ``labelsmooth.calibration`` (reliability figures, the
selective-classification formulas) and ``labelsmooth.tracking`` (W&B checks); never the training code (``cli``,
``module``, ``callbacks``, ``data``, ``models``, ``smoothing``), and never torch.
"""
