"""Benchmarks of attention_jax against the implementations users would otherwise reach for.

Each module is a script that prints Markdown tables, writes JSON and prints the command that reruns it:

    python -m benchmarks.scorers        scorer forward / forward+backward time and compiled memory
    python -m benchmarks.throughput     training tokens/s vs PyTorch and Keras baselines of the same model
    python -m benchmarks.scaling        simulated CPU devices (data parallel) and vmapped seeds
    python -m benchmarks.compile_time   first-step compile time of the default config

`--quick` runs any of them in well under a minute (smoke test); BENCHMARKS.md holds the latest full tables.
"""
