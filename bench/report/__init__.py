"""The comparison report: ``python -m bench.report [results_dir]`` → ``results_dir/report/``.

Layers, so that every number can be tested without drawing anything:

* ``load`` — run folders and the timing pass into DataFrames; bad files become warnings;
* ``groups`` — the order and grouping of frameworks (the registry's), methods (the tutorial's six,
  then those beyond it) and models (each one a section of its own when there are several);
* ``aggregate``, ``speed``, ``claims`` — pure functions: per-run figures, seeds folded, time
  per step and ratios with 95 % intervals, the tutorial's claims judged;
* ``glance`` — pure too: "At a glance", the page's first section (fastest framework, memory,
  first step, largest accuracy difference, claim counts per model and method group);
* ``versions`` — pure too: where a folder holds several releases of a framework, each release's
  label (``"jax 0.9.2"``) and the section "Versions" (each release against its framework's newest:
  time per step from the timing pass, parameters from parity);
* ``tables``, ``figures`` — strings for people, PNG and SVG figures;
* ``render`` (Jinja2 templates under ``templates/``) and ``page`` (the sections in order,
  ``build_report``) — ``index.html``, ``report.md``, ``summary.csv``;
* ``sections`` — sections other modules contribute, collected in child processes (they may
  import a framework; this package imports none).
"""
