"""The commands (train, evaluate, sample, run_figures, summarize, compare, families, bench, shards), and nothing else."""
