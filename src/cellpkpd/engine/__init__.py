"""Layer 2: the simulator: a `ModelSpec` compiled to JAX functions, doses and their padded arrays,
the exact and ODE solvers, and `Simulator`, the compiled pure core that fits, sweeps and
dose-ranging all call."""
