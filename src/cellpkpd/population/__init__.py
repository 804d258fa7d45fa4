"""Layer 3: the statistical description of a population: between-subject variability, covariate
effects and residual error (`cp.Population`)."""
