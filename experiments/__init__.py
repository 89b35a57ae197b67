"""Entry points (`python -m experiments.<name>`): config file -> task -> the attention_jax library.

Importing this package, which every entry point does first, sets up how the process runs XLA:CPU steps
(`attention_jax.cpu_runtime.configure`: computations on the calling thread, from a heap that keeps what a step
frees); it must come before JAX's first computation. ATTENTION_JAX_DEFAULT_CPU_RUNTIME=1 leaves JAX and malloc
on their defaults.
"""

from attention_jax import cpu_runtime

cpu_runtime.configure()
