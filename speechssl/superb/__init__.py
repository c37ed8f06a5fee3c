"""SUPERB-style probing of frozen upstreams: featurizer, hidden-state cache, tasks, runner,
report (see ``speechssl superb --help``)."""
