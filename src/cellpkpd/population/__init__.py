"""Layer 3: the statistical description of a population: between-subject variability, covariate
effects (`effects.CovariateEffect`) and residual error (`error`), gathered by `cp.Population`."""
