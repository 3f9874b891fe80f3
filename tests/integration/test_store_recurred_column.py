"""A store created before ``problems.recurred_at`` gains it at start-up: problems stored
before read back with no recurrence, new ones with theirs, and the evaluation's loader
tells a recurrence from an aftermath reopen."""

from __future__ import annotations

import pytest

from pipeline.evaluate.load import load_problems_between
from pipeline.events.problem import Problem, problems_table
from pipeline.store.ddl import schema_statements
from tests.store_backends import IN_PROCESS, close_backend, open_backend
from tests.unit.correlate.support import T0

pytestmark = pytest.mark.integration

MIN = 60_000


def _problem(pid: str, reopened: tuple[int, ...], recurred: tuple[int, ...]) -> Problem:
    return Problem(id=pid, version=1, scope="", status="open", opened_at=T0,
                   updated_at=T0 + 30 * MIN, reopened_at=reopened, recurred_at=recurred)


@pytest.mark.parametrize("kind", IN_PROCESS)
def test_old_store_gains_recurred_at(kind, tmp_path):
    store = open_backend(kind, tmp_path)
    try:
        old = [s.replace("    reopened_at      Array(DateTime64(3, 'UTC')),",
                         "    reopened_at      Array(DateTime64(3, 'UTC'))")
               .replace("    recurred_at      Array(DateTime64(3, 'UTC'))  -- those its root "
                        "cause failed again\n", "")
               for s in schema_statements("tocsin", 0) if "ALTER" not in s]
        for statement in old:
            store.query(statement)
        assert "recurred_at" not in str(store.query("DESCRIBE TABLE tocsin.problems").rows)
        before = problems_table([_problem("before", (T0 + 10 * MIN,), ())]) \
            .drop_columns(["recurred_at"])
        store.insert_arrow("problems", before)
        store.ensure_schema()
        store.ensure_schema()  # idempotent
        store.insert_arrow("problems", problems_table(
            [_problem("after", (T0 + 10 * MIN, T0 + 20 * MIN), (T0 + 20 * MIN,))]))
        rows = {r["id"]: (r["reopened_at"], r["recurred_at"]) for r in
                load_problems_between(store.query, "tocsin", T0, T0 + 60 * MIN)}
        assert rows == {"before": ([T0 + 10 * MIN], []),
                        "after": ([T0 + 10 * MIN, T0 + 20 * MIN], [T0 + 20 * MIN])}
    finally:
        close_backend(store)
