"""The S4Rec reference example as a package: configuration, model, data, loop, checkpoints, CLIs.

Module map (each depends only on the ones above it):

- ``config``: :class:`TrainConfig` and the presets (every setting of a run).
- ``model``: :class:`S4RecModel` (explicit arguments) and :func:`build_model` (the one builder).
- ``data``: the run's dataset, split, head labels and negative sampler.
- ``intents``: ICLRec's per-epoch k-means intents.
- ``checkpoint``: the one versioned checkpoint format, its loader, atomic writes.
- ``evaluate``: full-ranking evaluation and ``evaluate.py``'s command line.
- ``loop``: the training loop (epochs, validation, early stopping, test).
- ``cli`` / ``cli_common``: ``train.py``'s command line and what the scripts share.
- ``report`` / ``headtail``: the reproduction tables and figures, the head/tail study.

The scripts ``train.py``, ``evaluate.py``, ``report.py`` and ``headtail.py`` beside this folder
are thin entry points that call ``main(argv)`` of these modules.
"""
