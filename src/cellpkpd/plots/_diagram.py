"""Compartment diagram of a ModelSpec, drawn with matplotlib alone (no graphviz)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.errors import SpecError
from ._common import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..spec.model import ModelSpec

_BOX_H = 0.55  # box height [layout units; columns are 3 units apart, rows 1]
_COL_W = 3.2
#: font size [pt] of the rate labels, the key and the notes: 8 pt at 100 dpi is 11 px, still
#: 8 px when a notebook page (900 px) shrinks a 12-inch diagram (msc_pkpd_host) to fit
_SMALL = 8.0


def _layers(spec: ModelSpec) -> tuple[dict[str, int], set[tuple[str, str]]]:
    """Column of each state: the longest path (in flows) from the first dosed state, once
    the flows that close a cycle (release back to blood, recirculation) are set aside, so
    that every other flow runs left to right."""
    states = list(spec.states)
    succ: dict[str, list[str]] = {s: [] for s in states}
    for f in spec.flows:
        if f.target is not None and f.target != f.source and f.target not in succ[f.source]:
            succ[f.source].append(f.target)
    # the first dosed state (e.g. venous blood for an IV model) starts the diagram
    roots = [s for s in spec.dosing if s in succ][:1] or states[:1]
    roots += [s for s in states if s not in roots]
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1 on the DFS stack, 2 done
    order: list[str] = []
    for root in roots:
        if root in state:
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                order.append(node)
                stack.pop()
            elif state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    layer = {s: 0 for s in states}
    linked = {f.source for f in spec.flows} | {f.target for f in spec.flows}
    for node in reversed(order):  # topological order of the forward flows
        for t in succ[node]:
            if (node, t) not in back:
                layer[t] = max(layer[t], layer[node] + 1)
    # states without flows (driven by [odes] alone, e.g. a biomarker): a last column
    last = max((layer[s] for s in states if s in linked), default=-1) + 1
    for s in states:
        if s not in linked and s not in spec.dosing:
            layer[s] = last
    return layer, back


def _order(
    spec: ModelSpec, layer: dict[str, int], back: set[tuple[str, str]]
) -> dict[int, list[str]]:
    """States per column, ordered by sweeps of the barycentre heuristic over the forward
    flows (each state placed at the mean row of its upstream, then downstream,
    neighbours), which keeps arrows short and crossings few."""
    cols: dict[int, list[str]] = {}
    for s in spec.states:
        cols.setdefault(layer[s], []).append(s)
    up: dict[str, list[str]] = {s: [] for s in spec.states}
    down: dict[str, list[str]] = {s: [] for s in spec.states}
    for f in spec.flows:
        if f.target is not None and layer[f.target] > layer[f.source]:
            if (f.source, f.target) not in back:
                up[f.target].append(f.source)
                down[f.source].append(f.target)

    def sweep(ks: list[int], nbrs: dict[str, list[str]]) -> None:
        for k in ks:
            row = {s: i - (len(c) - 1) / 2 for c in cols.values() for i, s in enumerate(c)}
            score = {}
            for s in cols[k]:
                adj = [row[n] for n in nbrs[s]]
                score[s] = float(np.mean(adj)) if adj else row[s]
            cols[k] = sorted(cols[k], key=score.__getitem__)

    ks = sorted(cols)
    for _ in range(3):
        sweep(ks[1:], up)
        sweep(ks[-2::-1], down)
    sweep(ks[1:], up)
    return cols


def _bezier(start: tuple[float, float], end: tuple[float, float], rad: float) -> np.ndarray:
    """Points along matplotlib's ``arc3,rad=rad`` connection (a quadratic Bezier whose
    control point is the chord's midpoint moved by ``rad`` x chord length, to the left of
    the direction of travel for rad < 0); equal aspect, so data and display agree."""
    (xs, ys), (xe, ye) = start, end
    cx, cy = (xs + xe) / 2 + rad * (ye - ys), (ys + ye) / 2 - rad * (xe - xs)
    u = np.linspace(0.0, 1.0, 41)[:, None]
    p0, p1, p2 = np.array([xs, ys]), np.array([cx, cy]), np.array([xe, ye])
    return (1 - u) ** 2 * p0 + 2 * u * (1 - u) * p1 + u**2 * p2


def _clear_bend(
    start: tuple[float, float],
    end: tuple[float, float],
    boxes: dict[str, tuple[float, float, float, float]],
    ends: set[str],
    least: float = 0.0,
) -> float:
    """The smallest bend (arc3 ``rad``) for which the arrow from `start` to `end`, and its
    label at the curve's midpoint, touch none of the `boxes` but its own two (`ends`);
    the least-crossing bend whose label lies on no box when none is clear. With `least` > 0
    the bend is at least that and to the right of the direction of travel, so that the two
    arrows of a pair of opposite flows (and a flow back to an earlier column) never lie on
    each other."""
    others = [b for s, b in boxes.items() if s not in ends]
    pad = 0.12  # clearance round a box [layout units], room for the label's height

    def hits(rad: float) -> int:
        pts = _bezier(start, end, rad)
        # a label on a box (its own two included) is worse than any number of crossings
        mx, my = pts[len(pts) // 2]
        n = 100 * sum(x0 <= mx <= x1 and y0 <= my <= y1 for x0, y0, x1, y1 in boxes.values())
        for x0, y0, x1, y1 in others:
            inside = (
                (pts[:, 0] > x0 - pad)
                & (pts[:, 0] < x1 + pad)
                & (pts[:, 1] > y0 - pad)
                & (pts[:, 1] < y1 + pad)
            )
            n += int(inside.any())
        return n

    if least > 0:
        candidates = [least + d for d in (0.0, 0.08, 0.16, 0.25, 0.35, 0.5, 0.65)]
    else:
        bends = (0.08, 0.15, 0.22, 0.3, 0.4, 0.5, 0.65)
        candidates = [0.0] + [s * r for r in bends for s in (-1.0, 1.0)]
    scores = [hits(r) for r in candidates]
    return candidates[int(np.argmin(scores))]


def rate_tags(spec: ModelSpec, max_label: int = 16) -> dict[str, str]:
    """Rate expression -> its tag ``r1, r2, ...`` on the arrows of `diagram`, for the
    expressions longer than `max_label` characters, in the order of the model's flows
    (one tag per distinct expression). The library pages list them in their flow table."""
    tags: dict[str, str] = {}
    for f in spec.flows:
        text = f.rate.source.strip()
        if len(text) > max_label and text not in tags:
            tags[text] = f"r{len(tags) + 1}"
    return tags


def diagram(
    spec: ModelSpec,
    *,
    rates: bool = True,
    max_label: int = 16,
    title: str | None = None,
) -> Figure:
    """Compartment diagram of a model: a box per state, an arrow per flow.

    States are laid out in columns by their distance (in flows) from the dosed states,
    so a dose enters on the left and the flows run to the right; within a column, states
    are ordered to keep arrows short. Flows back to an earlier column (release,
    recirculation) are drawn as grey curves; a flow that would cross a box it does not
    connect bends round it (the least bend that clears every other box). A flow's label
    is its rate expression when that is short (up to `max_label` characters), else a tag
    ``r1, r2, ...`` explained in a key below the diagram. States with terms in ``[odes]``
    (nonlinear or extra fluxes) have a dashed border; dosed states get an incoming "dose"
    arrow.

    Parameters
    ----------
    spec : ModelSpec
        The model (`cp.load_model`).
    rates : bool
        Label the arrows with their rate constants [1/time].
    max_label : int
        Longest rate expression written on an arrow; longer ones go to the key.
    title : str, optional
        Figure title (default: the model's name and time unit of its rates).

    Returns
    -------
    matplotlib.figure.Figure
        One axes without ticks; its texts are the state names and the rate labels.

    Raises
    ------
    SpecError
        If `spec` is not a ModelSpec or has no states.
    """
    _check_spec(spec)
    pos, n_cols, n_rows = _layout(spec)
    width = {s: 0.13 * max(len(s), 4) + 0.3 for s in spec.states}
    tags = rate_tags(spec, max_label) if rates else {}
    key_lines = [f"{tag} = {text}" for text, tag in tags.items()]
    fig, key_h = _figure(n_cols, n_rows, key_lines)
    ax = fig.axes[0]
    _draw_boxes(ax, spec, pos, width)
    _draw_flows(ax, spec, pos, width, tags if rates else None)
    _draw_doses(ax, spec, pos, width)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.9, max(xs) + 1.6)
    ax.set_ylim(min(ys) - 0.9, max(ys) + 0.6)
    ax.set_aspect("equal", adjustable="box")
    _draw_key(fig, spec, key_lines, key_h)
    heading = f"{spec.name}: compartments and flows (rates in 1/{spec.time_unit})"
    fig.suptitle(heading if title is None else title, fontsize=11)
    return fig


def _check_spec(spec: object) -> None:
    """A ModelSpec with at least one state, else a one-line SpecError."""
    from ..spec.model import ModelSpec

    if not isinstance(spec, ModelSpec):
        raise SpecError(f"diagram: spec must be a cp.ModelSpec, got {type(spec).__name__}")
    if not spec.states:
        raise SpecError(f"diagram: model '{spec.name}' has no states")


def _layout(spec: ModelSpec) -> tuple[dict[str, tuple[float, float]], int, int]:
    """Centre of each state's box [layout units] (its column from `_layers` times the
    column width; its row centred on the column's middle, in the order of `_order`), and
    the number of columns and of rows in the fullest column."""
    layer, back = _layers(spec)
    cols = _order(spec, layer, back)
    pos: dict[str, tuple[float, float]] = {}
    for k, c in cols.items():
        for i, s in enumerate(c):
            pos[s] = (k * _COL_W, (len(c) - 1) / 2 - i)
    return pos, max(cols) + 1, max(len(c) for c in cols.values())


def _figure(n_cols: int, n_rows: int, key_lines: list[str]) -> tuple[Figure, float]:
    """A figure sized to `n_cols` columns and `n_rows` rows of boxes (equal aspect) with
    room below for the key of long rates (`key_lines`, in two columns), and one axes
    without ticks; also the key's height [inches]."""
    key_rows = -(-len(key_lines) // 2)
    inch = 0.62  # inches per layout unit, on both axes (equal aspect)
    fig_w = max(6.0, inch * (_COL_W * (n_cols - 1) + 3.5) + 0.3)
    key_h = 0.16 * key_rows + (0.15 if key_rows else 0.0)
    fig_h = max(2.4, inch * (n_rows + 1.3) + 0.5) + key_h
    fig = new_figure(fig_w, fig_h)
    ax = fig.subplots()
    ax.set_axis_off()
    return fig, key_h


def _draw_boxes(
    ax: Any, spec: ModelSpec, pos: dict[str, tuple[float, float]], width: dict[str, float]
) -> None:
    """A rounded box per state with its name: dosed states orange, states with terms in
    ``[odes]`` with a dashed border."""
    from matplotlib.patches import FancyBboxPatch

    ode_states = set(spec.odes)
    for s, (x, y) in pos.items():
        w = width[s]
        ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - _BOX_H / 2),
                w,
                _BOX_H,
                boxstyle="round,pad=0.02,rounding_size=0.1",
                fc="#e8f0fb" if s not in spec.dosing else "#fde9cf",
                ec="#2c4a75",
                lw=1.2,
                ls="--" if s in ode_states else "-",
                zorder=2,
            )
        )
        ax.text(x, y, s, ha="center", va="center", fontsize=9, zorder=3)


def _flow_ends(
    source: str, target: str, pos: dict[str, tuple[float, float]], width: dict[str, float]
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Where the arrow of a flow between two states leaves and enters their boxes: the
    facing sides, or top and bottom for two states of one column."""
    (x0, y0), (x1, y1) = pos[source], pos[target]
    start = (
        (x0 + np.sign(x1 - x0) * width[source] / 2, y0)
        if x1 != x0
        else (x0, y0 + np.sign(y1 - y0) * _BOX_H / 2)
    )
    end = (
        (x1 - np.sign(x1 - x0) * width[target] / 2, y1)
        if x1 != x0
        else (x1, y1 - np.sign(y1 - y0) * _BOX_H / 2)
    )
    return start, end


def _draw_flows(
    ax: Any,
    spec: ModelSpec,
    pos: dict[str, tuple[float, float]],
    width: dict[str, float],
    tags: dict[str, str] | None,
) -> None:
    """An arrow per flow: a loss goes down and out of its box (red), a flow back to an
    earlier column or within one is grey, the others blue, each bent round the boxes it
    would cross; labelled with its rate or tag unless `tags` is None (no labels)."""
    from matplotlib.patches import FancyArrowPatch

    pairs = {(f.source, f.target) for f in spec.flows}
    boxes = {s: (x - width[s] / 2, y - _BOX_H / 2, x + width[s] / 2, y + _BOX_H / 2)
             for s, (x, y) in pos.items()}  # fmt: skip
    for f in spec.flows:
        x0, y0 = pos[f.source]
        text = f.rate.source.strip()
        lab = "" if tags is None else tags.get(text, text)
        if f.target is None:  # loss: a short arrow down and out of the box
            start, end = (x0, y0 - _BOX_H / 2), (x0 + 0.35, y0 - _BOX_H / 2 - 0.4)
            rad, back = 0.0, False
        else:
            x1 = pos[f.target][0]
            back = x1 < x0 or (x1 == x0)
            start, end = _flow_ends(f.source, f.target, pos, width)
            # the least bend whose arrow and label clear the other boxes
            least = 0.18 if back else (0.12 if (f.target, f.source) in pairs else 0.0)
            rad = _clear_bend(start, end, boxes, {f.source, f.target}, least)
        arrow = FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=9,
            connectionstyle=f"arc3,rad={rad}",
            color="#b5523b" if f.target is None else ("#7d8ba0" if back else "#2c4a75"),
            lw=0.9,
            shrinkA=1,
            shrinkB=1,
            zorder=1,
        )
        ax.add_patch(arrow)
        if lab:
            _draw_label(ax, start, end, rad, lab)


def _draw_label(
    ax: Any, start: tuple[float, float], end: tuple[float, float], rad: float, lab: str
) -> None:
    """A flow's rate label on a white ground at the middle of its arc3 curve."""
    (xs, ys), (xe, ye) = start, end
    mx, my = (xs + xe) / 2, (ys + ye) / 2
    # midpoint of matplotlib's arc3 Bezier curve (equal aspect: data ~ display)
    mx, my = mx + 0.5 * rad * (ye - ys), my - 0.5 * rad * (xe - xs)
    ax.text(
        mx,
        my,
        lab,
        fontsize=_SMALL,
        ha="center",
        va="center",
        color="#333333",
        bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 0.5},
        zorder=4,
    )


def _draw_doses(
    ax: Any, spec: ModelSpec, pos: dict[str, tuple[float, float]], width: dict[str, float]
) -> None:
    """An orange "dose" arrow into each dosed state, from the upper left."""
    from matplotlib.patches import FancyArrowPatch

    for s in spec.dosing:
        if s in pos:
            x, y = pos[s]
            ax.add_patch(
                FancyArrowPatch(
                    (x - width[s] / 2 - 0.9, y + 0.35),
                    (x - width[s] / 2, y),
                    arrowstyle="-|>",
                    mutation_scale=10,
                    color="#d9822b",
                    lw=1.4,
                )
            )
            ax.text(
                x - width[s] / 2 - 0.95,
                y + 0.4,
                "dose",
                fontsize=_SMALL,
                color="#d9822b",
                ha="right",
            )


def _draw_key(fig: Figure, spec: ModelSpec, key_lines: list[str], key_h: float) -> None:
    """The key of long rates in two columns under the diagram (the axes kept above it),
    and a note on dashed borders when a state has terms in ``[odes]``."""
    fig_h = fig.get_figheight()
    if key_lines:
        half = -(-len(key_lines) // 2)
        for j, chunk in enumerate((key_lines[:half], key_lines[half:])):
            fig.text(
                0.01 + 0.5 * j,
                0.005,
                "\n".join(chunk),
                fontsize=_SMALL,
                va="bottom",
                ha="left",
                family="monospace",
            )
    fig.get_layout_engine().set(rect=(0, key_h / fig_h, 1, 1 - key_h / fig_h))
    if spec.odes:
        fig.text(
            0.99,
            1 - 0.3 / fig_h,
            "dashed border: terms in [odes]",
            fontsize=_SMALL,
            ha="right",
            va="top",
            color="0.35",
        )
