"""Layer 4: population fits (`cp.fit`, `cp.predict`).

Modules, lower ones first: `sites` (the names of sample sites and the design recorded in a
fit's attrs), `data` (`FitData`: a data set as padded arrays), `likelihood` (the solve step
through `cp.Simulator`, the density of the observations, predictions per draw), `model` (the
numpyro model and its priors), `idata` (ArviZ output and diagnostics), `posterior` (new
subjects, `predict`, `simulate_study`), `run` (`fit`: NUTS, SVI, MAP), `summary` (the table
of a fit). Nothing is imported here, so that reading `sites` stays quick.
"""
