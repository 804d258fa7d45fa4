"""Interactive exploration in Jupyter: sliders for a model's parameters, covariates and dose
over one compiled simulator, redrawing the time course (and a cell model's biodistribution)
as they move."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import SpecError
from ..engine.dosing import DoseArrays, Regimen
from ..engine.simulator import Simulator, body_weight_name, check_regimen, check_times
from ..engine.solve import SOLVED, STATUS
from ..spec.model import ModelSpec, load_model
from ._common import label, log_axis, new_figure, unit_of, wrap
from ._time import (
    _organ_style,
    _panel_grid,
    _panel_title,
    _percent_of_dose,
    _time_labels,
    _wide_range,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Explorer", "explore"]

#: default number of time-course panels (the model's first observations)
MAX_PANELS = 4
#: slider positions between the ends of a slider
STEPS = 200
DOSE = "dose"


def explore(
    spec: ModelSpec | str,
    regimen: Regimen | None,
    times: Any,
    params: Sequence[str] | None = None,
    covariates: Sequence[str] | None = None,
    *,
    values: Mapping[str, float] | None = None,
    outputs: Sequence[str] | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    biodistribution: bool | None = None,
    log: bool = False,
    solver: str = "auto",
    rtol: float = 1e-8,
    atol: float = 1e-8,
    continuous_update: bool = True,
) -> Explorer:
    """Sliders for parameters, covariates and the dose of one regimen, redrawing the time
    course as they move (Jupyter, ipywidgets: ``pip install "cellpkpd[notebook]"``).

    The model is compiled once (one `cp.Simulator` inside one `jax.jit` whose inputs are the
    slider values); moving a slider runs that program again and redraws, never recompiling.

    Parameters
    ----------
    spec : ModelSpec or str
        Model, library name or path to a model file.
    regimen : Regimen or None
        The doses (None: none). Doses with units or per kg of body weight are resolved as
        by `cp.simulate`; a per-kg dose follows a body-weight slider.
    times : array, shape (n_times,)
        Output times [model time unit], non-decreasing, >= 0.
    params : sequence of str, optional
        Parameters that get a slider. Default: every parameter of a model with at most 8,
        none of a larger one (pass the names).
    covariates : sequence of str, optional
        Host and product covariates that get a slider (default: every covariate).
    values : dict name -> float, optional
        Starting values of the sliders, and values of other parameters and covariates,
        which stay fixed [their units] (default: the model's).
    outputs : sequence of str, optional
        States, observations or derived quantities drawn, one panel each (default: the
        model's first 4 observations, or states if it has none).
    ranges : dict name -> (low, high), optional
        Slider ends [the quantity's unit; ``"dose"``: as its slider]. Default: a positive
        parameter spans its value / 10 to x 10 within its bounds, on a log slider; a covariate
        (or a parameter that can be <= 0) its bounds, on a linear slider (an infinite bound:
        3 x |value| (at least 1) beyond the value); the dose its amount / 10 to x 10.
    biodistribution : bool, optional
        Offer the biodistribution view (% of dose in each organ: the ``frac_*``
        observations, as `cp.plots.biodistribution`); default: when the model has them.
    log : bool
        Start with logarithmic y axes on the time course (a checkbox changes it).
    solver : {"auto", "exact", "tsit5", "kvaerno5"}
    rtol, atol : float
        ODE tolerances (relative; absolute [amount]); unused by the exact path.
    continuous_update : bool
        Redraw while a slider is dragged (else when it is released).

    Returns
    -------
    Explorer
        A Jupyter cell shows its `Explorer.widget`; `Explorer.sliders`, `Explorer.data`
        and `Explorer.figure` let code drive and read it.

    Raises
    ------
    SpecError
        An unknown parameter, covariate or output (the message lists the known ones), a
        slider range that is empty or does not hold its starting value.
    DosingError
        A dose into an unknown state or route, a per-kg dose in a model without body weight.

    Notes
    -----
    The dose slider (``"dose"``; ``"regimen dose"`` if the model has a parameter ``dose``)
    multiplies every dose amount of the regimen (and every infusion rate given, so an
    infusion keeps its duration). It shows the dose amount [its unit] when all doses have one
    amount and unit, else a factor ("dose factor [1]"). Values outside a slider's range are
    clamped to it by ipywidgets.

    Examples
    --------
    >>> ex = cp.explore("one_cmt_iv", cp.Regimen([cp.Dose(0.0, 100.0, "central")]),
    ...                 np.linspace(0, 24, 97), params=["CL", "V"])
    >>> ex                              # in Jupyter: sliders beside the figure
    >>> ex.sliders["CL"].value = 3.0    # redraws; ex.data["conc"] is the new curve
    """
    if importlib.util.find_spec("ipywidgets") is None:  # pragma: no cover - no notebook extra
        raise ImportError("cp.explore needs ipywidgets: pip install 'cellpkpd[notebook]'")
    spec = load_model(spec) if not isinstance(spec, ModelSpec) else spec
    times = check_times(times, "explore")
    regimen = Regimen([]) if regimen is None else regimen
    if not isinstance(regimen, Regimen):
        raise SpecError(
            f"explore: regimen must be a cp.Regimen or None, got {type(regimen).__name__}"
        )
    check_regimen(spec, regimen, "explore")
    params = _names(spec, params, "params", covariates=False)
    covariates = _names(spec, covariates, "covariates", covariates=True)
    start = _start_values(spec, values)
    outputs = _outputs(spec, outputs)
    fracs = _fractions(spec, biodistribution)
    dose_base, per_kg, dose_slider = _dose_setup(spec, regimen, start)
    specs, dose_key = _slider_specs(spec, (*params, *covariates), start, dose_slider, ranges)
    outs = tuple(dict.fromkeys((*outputs, *fracs)))
    sim = Simulator(spec, times, outputs=outs, solver=solver, rtol=rtol, atol=atol)
    return Explorer(
        sim,
        sim.doses(dose_base),
        specs,
        outputs=outputs,
        fracs=fracs,
        fixed={k: v for k, v in start.items() if k not in specs},
        per_kg=per_kg,
        dose_key=dose_key,
        log=log,
        continuous_update=continuous_update,
    )


class Explorer:
    """Sliders over one compiled simulator and the figures they redraw; made by `explore`
    (its arguments checked there).

    Attributes
    ----------
    spec : ModelSpec
    times : array, shape (n_times,)
        Output times [model time unit].
    sliders : dict str -> ipywidgets slider
        One per parameter and covariate chosen, and ``"dose"`` when the regimen has doses
        (see `explore`); setting ``.value`` redraws.
    data : dict str -> numpy array (n_times,)
        The current outputs (time-course outputs and, for the biodistribution view, the
        ``frac_*`` observations) [their units; fractions as fractions]; NaN if the solve
        failed (`status` says why).
    figure : matplotlib.figure.Figure
        The time course, one panel per output, updated in place.
    biodistribution_figure : matplotlib.figure.Figure or None
        % of the dose per organ, updated in place (cell models with ``frac_*`` outputs).
    widget : ipywidgets.HBox
        Controls beside the figure (a PNG image of the view chosen).
    status : str
        "" after a successful solve, else the reason it failed.
    traces : int
        How many times the simulator was traced (compiled): 1, however often sliders move.
    """

    def __init__(
        self,
        sim: Simulator,
        doses: DoseArrays,
        sliders: Mapping[str, dict[str, Any]],
        *,
        outputs: Sequence[str],
        fracs: Sequence[str],
        fixed: Mapping[str, float],
        per_kg: tuple[Any, str, float] | None,
        dose_key: str,
        log: bool,
        continuous_update: bool,
    ) -> None:
        import ipywidgets as widgets

        self.spec, self.times, self.outputs = sim.spec, sim.times, tuple(outputs)
        self._sim, self._fracs, self._dose_key = sim, list(fracs), dose_key
        self._reference = sliders[dose_key]["reference"] if dose_key in sliders else 1.0
        # one jitted program whose inputs are the slider values
        self.traces = 0
        self._run = jax.jit(self._program(doses, per_kg, dict(fixed)))
        self.sliders: dict[str, Any] = {
            k: _slider(widgets, k, s, continuous_update) for k, s in sliders.items()
        }
        self._initial = {k: s.value for k, s in self.sliders.items()}
        self._holding = False
        self.data: dict[str, np.ndarray] = {}
        self.status = ""
        self._log = log
        self._solve()
        self.figure, self._lines = self._timecourse_figure(log)
        self.biodistribution_figure: Figure | None = None
        self._organ_lines: dict[str, Any] = {}
        if self._fracs:
            self.biodistribution_figure = self._biodistribution_figure()
        self._build_widget(widgets, log)
        for s in self.sliders.values():
            s.observe(self._on_change, names="value")
        self._render()

    # ---------------------------------------------------------------- compiled core
    def _program(self, doses: Any, per_kg: tuple[Any, str, float] | None, fixed: dict) -> Any:
        sim = self._sim

        def run(vals: dict[str, Any], factor: Any) -> tuple[dict[str, Any], Any]:
            self.traces += 1  # Python side effect: runs only when JAX traces
            p = {**fixed, **vals}
            amount = doses.amount
            if per_kg is not None:  # amounts per kg (resolved at 1 kg) x body weight [kg]
                mask, name, to_kg = per_kg
                amount = jnp.where(mask, amount * (p[name] * to_kg), amount)
            scaled = dataclasses.replace(doses, amount=amount * factor, rate=doses.rate * factor)
            return sim.solve(p, scaled)

        return run

    def _solve(self) -> None:
        key = self._dose_key
        vals = {k: jnp.asarray(s.value, dtype=float) for k, s in self.sliders.items() if k != key}
        factor = 1.0
        if key in self.sliders:
            factor = self.sliders[key].value / self._reference
        out, status = self._run(vals, jnp.asarray(factor, dtype=float))
        code = int(status)
        self.status = "" if code == SOLVED else STATUS.get(code, "unknown failure")
        nan = np.full(self.times.shape, np.nan)
        self.data = {k: np.asarray(v) if code == SOLVED else nan.copy() for k, v in out.items()}

    # ---------------------------------------------------------------- figures
    def _timecourse_figure(self, log: bool) -> tuple[Figure, dict[str, Any]]:
        spec = self.spec
        fig, grid = _panel_grid(len(self.outputs))
        lines = {}
        for ax, name in zip(grid.ravel(), self.outputs, strict=False):
            unit = unit_of(name, None, spec)  # "" for a derived name without a unit
            scale = 1.0
            if _percent_of_dose(name, unit):
                scale, unit = 100.0, "% of dose"
            (line,) = ax.plot(self.times, self.data[name] * scale, lw=1.6, color="C0")
            lines[name] = (line, scale)
            ax.set_ylabel(label(name, unit))
            _panel_title(ax, spec, name, grid.shape[1])
            ax.grid(True, which="major", alpha=0.35)
            ax.margins(x=0)
        _time_labels(grid, len(self.outputs), spec.time_unit)
        fig.suptitle(wrap(spec.name, int(12 * fig.get_figwidth())), fontsize=11)
        self._rescale_timecourse(lines)
        return fig, lines

    def _rescale_timecourse(self, lines: dict[str, Any]) -> None:
        for line, _ in lines.values():
            ax = line.axes
            if self._log:
                log_axis(ax, line.get_ydata())
            else:  # log_axis fixed the limits: autoscale again
                ax.set_yscale("linear")
                ax.relim()
                ax.autoscale(enable=True, axis="y")

    def _biodistribution_figure(self) -> Figure:
        fig = new_figure(8.6, 4.6)
        ax = fig.subplots()
        for i, o in enumerate(self._fracs):
            (line,) = ax.plot(
                self.times, 100.0 * self.data[o], **_organ_style(i), lw=1.6,
                label=o[5:].replace("_", " "),
            )  # fmt: skip
            self._organ_lines[o] = line
        # log axis when the organs' peaks span more than two decades, as biodistribution()
        self._organ_log = _wide_range([self.data[o] for o in self._fracs])
        self._rescale_organs()
        ax.set_ylabel(label("fraction of dose", "%"))
        ax.set_xlabel(label("time", self.spec.time_unit))
        ax.grid(True, which="major", alpha=0.35)
        ax.margins(x=0)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.suptitle(f"{self.spec.name}: biodistribution", fontsize=11)
        return fig

    def _rescale_organs(self) -> None:
        if not self._organ_lines:
            return
        ax = next(iter(self._organ_lines.values())).axes
        if self._organ_log:
            ys = np.concatenate([ln.get_ydata() for ln in self._organ_lines.values()])
            log_axis(ax, ys, decades=5.0)
        else:
            ax.relim()
            ax.autoscale_view()

    def _redraw(self) -> None:
        for name, (line, scale) in self._lines.items():
            line.set_ydata(self.data[name] * scale)
        self._rescale_timecourse(self._lines)
        for o, line in self._organ_lines.items():
            line.set_ydata(100.0 * self.data[o])
        self._rescale_organs()

    # ---------------------------------------------------------------- widgets
    def _build_widget(self, widgets: Any, log: bool) -> None:
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self._message = widgets.HTML()
        self._log_box = widgets.Checkbox(value=log, description="log y axes", indent=False)
        self._log_box.observe(self._on_log, names="value")
        reset = widgets.Button(description="reset", tooltip="sliders back to their start")
        reset.on_click(lambda _: self.reset())
        controls: list[Any] = [
            widgets.HTML(f"<b>{self.spec.name}</b>"), *self.sliders.values(),
            widgets.HBox([self._log_box, reset]),
        ]  # fmt: skip
        self._view = None
        if self.biodistribution_figure is not None:
            self._view = widgets.ToggleButtons(
                options=["time course", "biodistribution"], value="time course"
            )
            self._view.observe(lambda _: self._render(), names="value")
            controls.append(self._view)
        controls.append(self._message)
        self.widget = widgets.HBox(
            [widgets.VBox(controls, layout=widgets.Layout(min_width="450px")), self.image]
        )

    def _on_change(self, change: dict[str, Any]) -> None:
        if not self._holding:
            self.update()

    def _on_log(self, change: dict[str, Any]) -> None:
        self._log = bool(change["new"])
        self._rescale_timecourse(self._lines)
        self._render()

    @property
    def view(self) -> str:
        """The figure shown: "time course" or "biodistribution" (settable, as its buttons)."""
        return "time course" if self._view is None else self._view.value

    @view.setter
    def view(self, value: str) -> None:
        options = ("time course",) if self._view is None else self._view.options
        if value not in options:
            raise SpecError(
                f"Explorer.view = {value!r}; expected one of {', '.join(map(repr, options))}"
            )
        if self._view is not None:
            self._view.value = value

    @property
    def log(self) -> bool:
        """Logarithmic y axes on the time course (settable, as its checkbox)."""
        return self._log

    @log.setter
    def log(self, value: bool) -> None:
        self._log_box.value = bool(value)

    def _render(self) -> None:
        fig = self.biodistribution_figure if self.view == "biodistribution" else self.figure
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        self.image.value = buf.getvalue()
        self._message.value = (
            f"<span style='color:#b00'>solve failed: {self.status}</span>" if self.status else ""
        )

    # ---------------------------------------------------------------- public
    @property
    def values(self) -> dict[str, float]:
        """Current slider values (name -> value [its unit])."""
        return {k: float(s.value) for k, s in self.sliders.items()}

    def update(self) -> None:
        """Run the compiled simulator on the current slider values and redraw."""
        self._solve()
        self._redraw()
        self._render()

    def set(self, **values: float) -> None:
        """Set several sliders and redraw once: ``ex.set(CL=3.0, dose=200.0)``."""
        for k in values:
            if k not in self.sliders:
                raise SpecError(
                    f"Explorer.set: no slider '{k}'; sliders: {', '.join(self.sliders)}"
                )
        self._holding = True
        try:
            for k, v in values.items():
                self.sliders[k].value = v
        finally:
            self._holding = False
        self.update()

    def reset(self) -> None:
        """Every slider back to its starting value."""
        self.set(**self._initial)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


# -------------------------------------------------------------------- helpers
def _start_values(spec: ModelSpec, values: Mapping[str, float] | None) -> dict[str, float]:
    """The model's parameter and covariate values with those of `values`, checked (known
    names, numbers, a covariate within its bounds)."""
    start = spec.defaults()
    for k, v in (values or {}).items():
        if k not in start:
            raise SpecError(
                f"explore: values names unknown '{k}'; known parameters and covariates: "
                + ", ".join(start)
            )
        try:
            start[k] = float(v)
        except (TypeError, ValueError):
            raise SpecError(f"explore: values['{k}'] = {v!r:.40} is not a number") from None
        lo, hi = spec.covariates[k].bounds if k in spec.covariates else (-math.inf, math.inf)
        if not lo <= start[k] <= hi:  # also rejects NaN
            raise SpecError(
                f"explore: values['{k}'] = {start[k]:g} is outside the covariate's bounds "
                f"[{lo:g}, {hi:g}]"
            )
    return start


def _fractions(spec: ModelSpec, biodistribution: bool | None) -> list[str]:
    """The ``frac_*`` observations of the biodistribution view (none without it; by
    default it is offered when the model has them)."""
    fracs = [o for o in spec.observations if o.startswith("frac_")]
    if biodistribution is None:
        biodistribution = bool(fracs)
    if biodistribution and not fracs:
        raise SpecError(
            f"explore: biodistribution=True, but {spec.name} has no frac_* observations "
            "(fractions of the dose per organ)"
        )
    return fracs if biodistribution else []


def _slider_specs(
    spec: ModelSpec,
    names: Sequence[str],
    start: Mapping[str, float],
    dose_slider: dict[str, Any] | None,
    ranges: Mapping[str, tuple[float, float]] | None,
) -> tuple[dict[str, dict[str, Any]], str]:
    """The spec of each slider (parameters and covariates `names`, then the dose's),
    with the ends of `ranges`; and the dose slider's name."""
    specs = {k: _slider_spec(spec, k, start[k]) for k in names}
    # the dose's slider is "dose", or "regimen dose" beside a parameter named dose
    dose_key = DOSE if DOSE not in specs else f"regimen {DOSE}"
    if dose_slider is not None:
        specs[dose_key] = dose_slider
    for k, rng in (ranges or {}).items():
        if k not in specs:
            raise SpecError(
                f"explore: ranges names '{k}', which has no slider; sliders: "
                + (", ".join(specs) or "none")
            )
        specs[k] = _with_range(specs[k], k, rng)
    return specs, dose_key


def _names(spec: ModelSpec, names: Sequence[str] | None, arg: str, covariates: bool) -> list[str]:
    """The parameter or covariate names of one argument, checked against the model."""
    own = spec.covariates if covariates else spec.parameters
    other = spec.parameters if covariates else spec.covariates
    if names is None:
        if covariates:
            return list(own)
        return list(own) if len(own) <= 8 else []
    if isinstance(names, str):
        names = [names]
    for k in names:
        if k in own:
            continue
        hint = ""
        if k in other:
            kind, where = ("parameter", "params") if covariates else ("covariate", "covariates")
            hint = f" ('{k}' is a {kind}: pass it in {where}=)"
        raise SpecError(
            f"explore: {arg} names unknown '{k}'{hint}; known: "
            + (", ".join(own) or f"none ({spec.name} has no {arg})")
        )
    return list(dict.fromkeys(names))


def _outputs(spec: ModelSpec, outputs: Sequence[str] | None) -> tuple[str, ...]:
    if outputs is None:
        names = list(spec.observations) or list(spec.states)
        return tuple(names[:MAX_PANELS])
    if isinstance(outputs, str):
        outputs = [outputs]
    known = (*spec.states, *spec.observations, *spec.derived)
    for o in outputs:
        if o not in known:
            raise SpecError(f"explore: outputs names unknown '{o}'; known: {', '.join(known)}")
    if not outputs:
        raise SpecError("explore: outputs is empty; name at least one state or observation")
    return tuple(dict.fromkeys(outputs))


def _slider_spec(spec: ModelSpec, name: str, value: float) -> dict[str, Any]:
    """Kind ("log" or "linear"), ends, starting value and label of one slider."""
    item = spec.parameters.get(name) or spec.covariates[name]
    lo, hi = (float(b) for b in item.bounds)
    if name in spec.parameters and value > 0 and lo >= 0:
        kind, lo, hi = "log", max(lo, value / 10.0), min(hi, value * 10.0)
    else:
        kind = "linear"
        pad = max(3.0 * abs(value), 1.0)
        lo = lo if math.isfinite(lo) else value - pad
        hi = hi if math.isfinite(hi) else value + pad
    out = {"kind": kind, "low": lo, "high": hi, "value": value, "unit": item.unit,
           "tooltip": item.description}  # fmt: skip
    return _with_range(out, name, (lo, hi))


def _with_range(s: dict[str, Any], name: str, rng: Any) -> dict[str, Any]:
    try:
        lo, hi = (float(x) for x in rng)
    except (TypeError, ValueError):
        raise SpecError(f"explore: ranges['{name}'] = {rng!r}; expected (low, high)") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise SpecError(
            f"explore: the slider of '{name}' spans [{lo:g}, {hi:g}]; expected finite low < high"
        )
    if s["kind"] == "log" and lo <= 0:
        raise SpecError(
            f"explore: the slider of '{name}' is logarithmic; its range [{lo:g}, {hi:g}] "
            "needs low > 0"
        )
    if not lo <= s["value"] <= hi:
        raise SpecError(
            f"explore: '{name}' starts at {s['value']:g}, outside its slider [{lo:g}, {hi:g}]; "
            "change values= or ranges="
        )
    return {**s, "low": lo, "high": hi}


def _slider(widgets: Any, name: str, s: dict[str, Any], continuous: bool) -> Any:
    common = dict(
        value=s["value"],
        description=s.get("label") or label(name, s["unit"]),
        tooltip=s.get("tooltip") or None,
        readout_format=".4g",
        continuous_update=continuous,
        style={"description_width": "170px"},
        layout=widgets.Layout(width="440px"),
    )
    if s["kind"] == "log":
        a, b = math.log10(s["low"]), math.log10(s["high"])
        return widgets.FloatLogSlider(min=a, max=b, step=(b - a) / STEPS, base=10.0, **common)
    step = (s["high"] - s["low"]) / STEPS
    return widgets.FloatSlider(min=s["low"], max=s["high"], step=step, **common)


def _dose_setup(
    spec: ModelSpec, regimen: Regimen, start: Mapping[str, float]
) -> tuple[Regimen, tuple[Any, str, float] | None, dict[str, Any] | None]:
    """The regimen in the model's units (per-kg amounts at 1 kg), the per-kg slots with the
    body-weight name and its factor to kg (or None), and the dose slider's spec (None when
    there are no doses)."""
    doses = [d for d in regimen.doses if d.amount > 0]
    if not doses:
        return regimen, None, None
    amounts = {(float(d.amount), _dose_unit(spec, d)) for d in doses}
    if len(amounts) == 1:
        ((amount, unit),) = amounts
        slider = {"kind": "log", "low": amount / 10.0, "high": amount * 10.0, "value": amount,
                  "unit": unit, "reference": amount, "tooltip": "every dose's amount"}  # fmt: skip
    else:
        slider = {"kind": "log", "low": 0.1, "high": 10.0, "value": 1.0, "unit": "1",
                  "label": "dose factor [1]", "reference": 1.0,
                  "tooltip": "factor on every dose amount"}  # fmt: skip
    per_kg = None
    if any(d.per_body_weight(spec) for d in regimen.doses):
        name, to_kg = _body_weight(spec)
        one = regimen.resolve(spec, 1.0)
        two = regimen.resolve(spec, 2.0).to_arrays(None, spec)
        mask = np.asarray(two.amount) != np.asarray(one.to_arrays(None, spec).amount)
        per_kg = (jnp.asarray(mask), name, to_kg)
        return one, per_kg, slider
    return regimen.resolve(spec), per_kg, slider


def _dose_unit(spec: ModelSpec, dose: Any) -> str:
    unit = dict(dose.units).get("amount")
    if unit:
        return str(unit)
    return f"{spec.amount_unit}/kg" if dose.per == "kg" else spec.amount_unit


def _body_weight(spec: ModelSpec) -> tuple[str, float]:
    """The model's body-weight name and the factor from its unit to kg (as `cp.simulate`)."""
    return body_weight_name(spec, "explore")
