"""Side-by-side benchmarks: ctr-magic against the reference tools, in one run, as ratios."""
