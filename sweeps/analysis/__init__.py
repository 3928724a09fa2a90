"""Reading a sweep's results: the Pareto front and hypervolume, plots, `best`, the method table."""
