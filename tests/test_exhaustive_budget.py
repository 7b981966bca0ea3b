"""cudnnconv.exhaustive_budget: the exhaustive search's budget and its progress line (no GPU)."""
from cudnnconv import exhaustive_budget


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_the_budget_runs_out_after_its_seconds():
    clock = _Clock()
    b = exhaustive_budget.Budget(2.5, clock)
    assert not b.exhausted() and b.spent() == 0
    clock.t += 2.4
    assert not b.exhausted()
    clock.t += 0.1
    assert b.exhausted() and abs(b.spent() - 2.5) < 1e-9


def test_progress_counts_keeps_the_best_and_reports_at_most_once_a_second():
    clock, lines = _Clock(), []
    p = exhaustive_budget.Progress("forward x=(1, 2)", lines.append, every_s=1.0, clock=clock)
    p.add("eng1", 0.5)
    p.add("eng2", float("nan"))                 # did not run: counted, never the best
    clock.t += 0.5
    p.add("eng3", 0.25)
    assert lines == []
    clock.t += 0.6
    p.add("eng4", 0.75)
    assert lines == ["cudnnconv: exhaustive search of forward x=(1, 2): 4 candidates timed, best eng3 0.2500 ms"]
    p.add("eng5", 0.1)
    assert len(lines) == 1 and p.count == 5 and (p.best, p.best_ms) == ("eng5", 0.1)
    clock.t += 1.0
    p.add("eng6", float("nan"))
    assert lines[-1].endswith("6 candidates timed, best eng5 0.1000 ms")
    p.done()
    assert len(lines) == 3 and lines[-1].endswith("6 candidates timed, best eng5 0.1000 ms (done)")

