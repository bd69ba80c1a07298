"""The direct path's claim leaves result_config to the client (schema.result_config_arrow): the JSON text it builds
is the text PostgreSQL gives for result_config_sql of the same three hot columns, value for value."""

from __future__ import annotations

import itertools

import psycopg
import pyarrow as pa

from tiering import schema as S


def test_result_config_built_on_the_client_is_postgresqls_text(db_url: str) -> None:
    storages = ["database", "Database", "MEMORY", "none", "None", "", "other", "databasé", None]
    ttls = [None, 0, 1, 3600, -5, 2**62]
    sizes = [None, 0, 1024, -1, 2**63 - 1]
    combos = list(itertools.product(storages, ttls, sizes))
    with psycopg.connect(db_url) as conn:
        expected = [
            r[0]
            for r in conn.execute(
                f"""SELECT {S.result_config_sql("s", "t", "m")}::text
                      FROM unnest(%s::varchar(20)[], %s::bigint[], %s::bigint[]) WITH ORDINALITY AS u(s, t, m, n)
                     ORDER BY n""",  # noqa: S608 - the registry's SQL
                ([c[0] for c in combos], [c[1] for c in combos], [c[2] for c in combos]),
            )
        ]
    built = S.result_config_arrow(
        pa.array([c[0] for c in combos], pa.string()),
        pa.array([c[1] for c in combos], pa.int64()),
        pa.array([c[2] for c in combos], pa.int64()),
    )
    assert built.to_pylist() == expected
    assert len(expected) == len(storages) * len(ttls) * len(sizes)
