"""Layer 3: NONMEM-style data sets: the reader, per-subject records, covariates at each record, and
simulation of a data set (`cp.simulate(data=)`)."""
