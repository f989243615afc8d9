"""Loading models and running jobs: what a --model names, loading and caching pipelines, the
options of one job, the checks before loading, and the one runner that samples and writes."""
