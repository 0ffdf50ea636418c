"""Solving the oracle's PuLP models: HiGHS through highspy (CBC where highspy is missing), silent at the
file-descriptor level, warm-started from a known feasible solution, with the remaining gap reported.

Usage::

    >>> problem = pulp.LpProblem("tiny", pulp.LpMaximize)
    >>> x = problem.add_variable("x", 0, 3, cat="Integer")
    >>> problem += x
    >>> result = solve(problem, start={x: 1.0})
    >>> result.optimal, result.gap, x.varValue
    (True, 0.0, 3.0)

Why the file-descriptor level: highspy 1.16 prints its banner from C++ straight to file descriptor 1
whatever ``output_flag`` says, which would corrupt ``rlmig plan --json`` and every other JSON on stdout.

Why a start: with a time limit, HiGHS may stop before it has found any solution. Given a complete
assignment of the integer variables (the continuous ones are completed by an LP), it starts from that
incumbent, so a time limit returns at least the start, reported as not optimal with its gap.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pulp

from rlmig.errors import RlmigError

_STDOUT_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null while the block runs (what C and C++ libraries print is
    dropped too); Python's and C's buffers are flushed on both sides so nothing crosses the boundary."""
    with _STDOUT_LOCK:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            sys.stdout.flush()
        try:
            saved = os.dup(1)
        except OSError:  # no fd 1 at all: nothing to protect
            yield
            return
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, 1)
                try:
                    yield
                finally:
                    with contextlib.suppress(OSError, AttributeError):
                        ctypes.CDLL(None).fflush(None)  # C stdio buffers still holding solver output
                    os.dup2(saved, 1)
            finally:
                os.close(null)
        finally:
            os.close(saved)


@dataclass(frozen=True)
class SolveResult:
    """How a solve ended: `optimal` when optimality is proven within the relative gap tolerance;
    `gap` is the relative gap between the solution returned and the solver's bound (0 when proven
    exactly, None when the solver does not say); `status` is the solver's word for it."""

    optimal: bool
    gap: float | None
    status: str


if pulp.HiGHS().available():

    class _StartedHiGHS(pulp.HiGHS):  # type: ignore[misc, valid-type]
        """PuLP's HiGHS interface, handing HiGHS the variables' initial values as a starting solution."""

        def callSolver(self, lp: pulp.LpProblem) -> None:
            given = [var for var in lp.variables() if var.varValue is not None]
            if given:
                index = np.array([var.index for var in given], dtype=np.int32)
                value = np.array([float(var.varValue) for var in given], dtype=float)
                lp.solverModel.setSolution(len(given), index, value)
            lp.solverModel.run()

else:  # pragma: no cover - highspy is a dependency; CBC (shipped with PuLP) serves without it
    _StartedHiGHS = None


def _solver(
    time_limit: float | None, gap: float | None, threads: int | None, warm: bool, abs_gap: float | None = None
) -> pulp.LpSolver:
    if _StartedHiGHS is not None:
        return _StartedHiGHS(msg=False, timeLimit=time_limit, gapRel=gap, gapAbs=abs_gap, threads=threads)
    return pulp.PULP_CBC_CMD(
        msg=False, timeLimit=time_limit, gapRel=gap, gapAbs=abs_gap, threads=threads, warmStart=warm
    )


def solve(
    problem: pulp.LpProblem,
    *,
    time_limit: float | None = None,
    gap: float | None = None,
    threads: int | None = 1,
    start: Mapping[pulp.LpVariable, float] | None = None,
    abs_gap: float | None = None,
) -> SolveResult:
    """Solve `problem` in place (read the variables' values afterwards), silently. The solve stops
    as optimal within the relative `gap` or the absolute `abs_gap` (objective units) of the bound.

    `start` assigns every integer variable (continuous ones may be left out) a value of a feasible
    solution; the solver begins from it, so a binding time limit still returns a solution. Raises
    `RlmigError` when the solver ends without any solution (or `start` is infeasible)."""
    for var in problem.variables():
        var.varValue = None
    for var, value in (start or {}).items():
        var.setInitialValue(value)
    solver = _solver(time_limit, gap, threads, warm=bool(start), abs_gap=abs_gap)
    with quiet_stdout():
        problem.solve(solver)
    if problem.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        optimal = problem.sol_status == pulp.LpSolutionOptimal
        return SolveResult(optimal, _gap(problem, optimal), _status(problem))
    if start and problem.status == pulp.LpStatusNotSolved:
        # Stopped before the solver took up the start (HiGHS with a limit of 0 s does): the start
        # itself, its continuous variables completed by the LP with the integers fixed.
        return _complete(problem, start)
    limit = f" within the time limit of {time_limit:g} s" if time_limit is not None else ""
    raise RlmigError(f"the ILP found no solution{limit} (solver status: {_status(problem)})")


def _complete(problem: pulp.LpProblem, start: Mapping[pulp.LpVariable, float]) -> SolveResult:
    bounds = {var: (var.lowBound, var.upBound) for var in start}
    try:
        for var, value in start.items():
            var.lowBound = var.upBound = value
        with quiet_stdout():
            problem.solve(_solver(None, None, 1, warm=False))
    finally:
        for var, (low, high) in bounds.items():
            var.lowBound, var.upBound = low, high
    if problem.sol_status != pulp.LpSolutionOptimal:
        raise RlmigError(f"the ILP's starting solution is infeasible (solver status: {_status(problem)})")
    return SolveResult(False, None, "time limit reached; the starting solution")


def _status(problem: pulp.LpProblem) -> str:
    model = getattr(problem, "solverModel", None)
    if model is not None and hasattr(model, "modelStatusToString"):
        return str(model.modelStatusToString(model.getModelStatus()))
    return str(pulp.LpStatus[problem.status])


def _gap(problem: pulp.LpProblem, optimal: bool) -> float | None:
    model = getattr(problem, "solverModel", None)
    if model is not None and problem.isMIP():
        value = float(model.getInfo().mip_gap)
        return value if math.isfinite(value) else None
    return 0.0 if optimal else None
