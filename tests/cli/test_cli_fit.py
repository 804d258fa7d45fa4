"""`cellpkpd fit`: outputs of a (short) fit and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellpkpd.cli.main import main


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory) -> Path:
    """Eight subjects, one-compartment IV bolus, CL = 2 L/h x IIV 0.2, V = 10 L, 10%
    proportional error."""
    rng = np.random.default_rng(11)
    times = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0])
    rows = []
    for i in range(8):
        cl = 2.0 * np.exp(0.2 * rng.standard_normal())
        rows.append({"ID": i + 1, "TIME": 0.0, "AMT": 100.0, "EVID": 1, "CMT": 1, "DV": "."})
        for t in times:
            c = 10.0 * np.exp(-cl / 10.0 * t) * (1.0 + 0.1 * rng.standard_normal())
            rows.append({"ID": i + 1, "TIME": t, "AMT": 0.0, "EVID": 0, "CMT": 1, "DV": c})
    path = tmp_path_factory.mktemp("fit") / "study.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_fit_writes_summary_netcdf_and_plot(data_csv: Path, tmp_path: Path) -> None:
    import arviz as az

    out = tmp_path / "out"
    args = [str(data_csv), "one_cmt_iv", "--iiv", "CL=0.3", "--error", "conc=proportional"]
    code = main(["fit", *args, "--method", "map", "--steps", "1500", "--out", str(out)])
    assert code == 0
    summary = pd.read_csv(out / "fit_summary.csv", index_col="name")
    assert {"CL", "V", "omega_CL", "sigma_prop_conc"} <= set(summary.index)
    # eight subjects with six observations: the MAP is within 15% of the true CL and V
    assert summary.loc["CL", "map"] == pytest.approx(2.0, rel=0.15)
    assert summary.loc["V", "map"] == pytest.approx(10.0, rel=0.15)
    idata = az.from_netcdf(out / "fit.nc")
    assert {"posterior", "posterior_predictive", "observed_data"} <= set(idata.groups())
    assert idata.posterior["CL_i"].sizes["subject"] == 8
    assert (out / "fit_gof.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--iiv", "CL=abc"], "--iiv CL=abc: the scale is not a number"),
        (["--iiv", "CL"], "expected NAME=VALUE"),
        (["--iiv", "Cl=0.3"], "unknown parameter 'Cl'"),
        (["--error", "conc=poisson"], "expected additive"),
        (["--chains", "0"], "--chains 0: must be >= 1"),
        (["--method", "mcmc"], "invalid choice"),
        (["--covariates", "linear"], "--covariates: invalid choice: 'linear'"),
        (["--cov", "CL"], "--cov 'CL': expected PARAMETER=COVARIATE[:FORM]"),
        (["--cov", "CL=WT:cubic"], "cubic"),
        (["--obs", "3=conc"], "--obs 3=conc: CMT 3 is not a state of 'one_cmt_iv' (1..1)"),
        (["--obs", "central=auc"], "not an observation"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    data_csv: Path, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    code = main(["fit", str(data_csv), "one_cmt_iv", *extra, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize("rule", ["nocb", "locf", None])
def test_fit_reads_the_data_with_the_covariates_rule(
    data_csv: Path, tmp_path: Path, monkeypatch, rule: str | None
) -> None:
    """--covariates reaches cp.read_nonmem (default nocb, as NONMEM); the fit itself is cut
    short by a read_nonmem that records its arguments and stops."""
    import cellpkpd.cli.main as cli

    seen = {}

    def fake(path, *args, **kwargs):
        seen.update(kwargs, path=Path(path))
        raise cli.cp.DataError("stop here")

    monkeypatch.setattr(cli.cp, "read_nonmem", fake)
    extra = [] if rule is None else ["--covariates", rule]
    assert main(["fit", str(data_csv), "one_cmt_iv", *extra, "--out", str(tmp_path)]) == 2
    assert seen == {"path": data_csv, "covariates": rule or "nocb"}


def test_missing_data_file(tmp_path: Path, capsys) -> None:
    assert main(["fit", str(tmp_path / "nope.csv"), "one_cmt_iv"]) == 2
    assert "no such data file" in capsys.readouterr().err


@pytest.mark.slow
def test_fit_takes_covariate_effects_and_an_observation_map(tmp_path: Path) -> None:
    """--cov CL=WT:power and --obs 2=conc on the theophylline data (CMT 2 = central):
    the weight exponent is estimated and reported."""
    data = Path(__file__).resolve().parents[3] / "shared" / "data" / "theophylline.csv"
    if not data.is_file():
        import cellpkpd as cp

        data = tmp_path / "theo.csv"
        cp.datasets.theophylline().frame.to_csv(data, index=False)
    out = tmp_path / "out"
    args = [str(data), "one_cmt_oral", "--cov", "CL=WT:power", "--obs", "2=conc"]
    assert main(["fit", *args, "--method", "map", "--steps", "300", "--out", str(out)]) == 0
    summary = pd.read_csv(out / "fit_summary.csv", index_col="name")
    assert "beta_CL_WT" in summary.index and np.isfinite(summary.loc["beta_CL_WT", "map"])
