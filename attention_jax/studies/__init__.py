"""Studies built on the tasks: the comparison sweep of attention variants and its report."""
