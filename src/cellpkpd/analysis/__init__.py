"""Layer 5: analyses that run the simulator many times: exposure metrics, sweeps in chunks,
virtual populations and dose-ranging, global sensitivity analysis."""
