"""The commands (train, evaluate, sample, figures, report, compare, bench, shards) and what they share."""
