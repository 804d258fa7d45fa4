"""Layer 4: population fits: the numpyro model built from a spec, NUTS/SVI/MAP runs, and their
ArviZ output (`cp.fit`, `cp.predict`)."""
