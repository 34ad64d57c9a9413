"""Our own detectors and label-efficient methods of Table I, on torchvision.

The shared machinery lives here once — detector builders (:mod:`baselines.detectors`), data and
crops (:mod:`baselines.data`), schedules and the CPU budget (:mod:`baselines.schedules`), one
supervised training loop with exact resume (:mod:`baselines.train`) — and each Table I method adds
only what is distinctive about it. Every module imports torch inside its functions, so importing
the package (e.g. to plan a benchmark) costs nothing.
"""
