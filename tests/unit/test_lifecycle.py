"""Pure lifecycle rules: rendering, validation, merging with others' rules, diffs, billing warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiering.errors import ConfigError
from tiering.lifecycle import (
    MAX_RULES,
    RULE_ID_PREFIX,
    VALID_STORAGE_CLASSES,
    LifecycleError,
    LifecycleSpec,
    describe_rule,
    diff_rules,
    merge_rules,
    normalize_rule,
    overlapping_prefixes,
    render_rules,
    rule_id,
    storage_class_warning,
)
from tiering.store.base import ALL_STORAGE_CLASSES

FOREIGN = {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 7}}


def test_render_whole_prefix_and_queue_rules() -> None:
    rules = render_rules(
        [
            LifecycleSpec("", [(90, "GLACIER"), (30, "STANDARD_IA")], expiration_days=365),
            LifecycleSpec("queue=emails", [], expiration_days=30),
        ],
        "archive/",
    )
    assert rules == [
        {
            "ID": "tiering:archive/",
            "Status": "Enabled",
            "Filter": {"Prefix": "archive/"},
            "Transitions": [{"Days": 30, "StorageClass": "STANDARD_IA"}, {"Days": 90, "StorageClass": "GLACIER"}],
            "Expiration": {"Days": 365},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        },
        {
            "ID": "tiering:archive/queue=emails/",
            "Status": "Enabled",
            "Filter": {"Prefix": "archive/queue=emails/"},
            "Expiration": {"Days": 30},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        },
    ]


def test_render_without_store_prefix_covers_whole_bucket() -> None:
    (rule,) = render_rules([LifecycleSpec("", [(0, "DEEP_ARCHIVE")])], "")
    assert rule["Filter"] == {"Prefix": ""}
    assert rule["ID"] == "tiering:(whole bucket)"
    assert "Expiration" not in rule


def test_long_rule_ids_are_hashed_within_s3_limit() -> None:
    long_a = "queue=" + "a" * 300
    long_b = "queue=" + "a" * 299 + "b"
    ida, idb = rule_id(long_a + "/"), rule_id(long_b + "/")
    assert len(ida) <= 255 and len(idb) <= 255
    assert ida.startswith(RULE_ID_PREFIX) and ida != idb


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (LifecycleSpec("", [(30, "FROZEN")]), "unknown storage class"),
        (LifecycleSpec("", [(30, "STANDARD")]), "cannot transition"),
        (LifecycleSpec("", [(10, "STANDARD_IA")]), "at least 30 days"),
        (LifecycleSpec("", [(-1, "GLACIER")]), ">= 0"),
        (LifecycleSpec("", [(30, "GLACIER"), (60, "STANDARD_IA")]), "waterfall"),
        (LifecycleSpec("", [(30, "GLACIER"), (30, "DEEP_ARCHIVE")]), "two transitions"),
        (LifecycleSpec("", [(30, "STANDARD_IA"), (40, "GLACIER")]), "30 days in STANDARD_IA"),
        (LifecycleSpec("", [(90, "GLACIER")], expiration_days=60), "before or on the last"),
        (LifecycleSpec("", [], expiration_days=0), "at least 1 day"),
        (LifecycleSpec("../other", [], expiration_days=3), "'..'"),
    ],
)
def test_invalid_specs_are_refused(spec: LifecycleSpec, message: str) -> None:
    with pytest.raises(LifecycleError, match=message):
        render_rules([spec], "archive")


def test_lifecycle_error_is_a_config_error() -> None:
    assert issubclass(LifecycleError, ConfigError)


def test_duplicate_prefixes_are_refused() -> None:
    with pytest.raises(LifecycleError, match="same prefix"):
        render_rules([LifecycleSpec("queue=a", [], 3), LifecycleSpec("queue=a/", [], 4)], "archive")


def test_overlapping_prefixes_are_reported() -> None:
    rules = render_rules(
        [LifecycleSpec("", [], 30), LifecycleSpec("queue=a", [], 3), LifecycleSpec("queue=b", [], 4)], "archive"
    )
    pairs = overlapping_prefixes(rules)
    assert ("tiering:archive/", "tiering:archive/queue=a/") in pairs
    assert ("tiering:archive/", "tiering:archive/queue=b/") in pairs
    assert len(pairs) == 2


def test_merge_keeps_foreign_rules_and_replaces_ours() -> None:
    old_ours = render_rules([LifecycleSpec("queue=old", [], 5)], "archive")
    current = [FOREIGN, *old_ours]
    new_ours = render_rules([LifecycleSpec("", [], 30)], "archive")
    merged = merge_rules(current, new_ours)
    assert merged == [FOREIGN, *new_ours]
    assert merged[0] is not FOREIGN  # copies, the input is untouched


def test_merge_refuses_rules_without_our_prefix_and_duplicates() -> None:
    with pytest.raises(LifecycleError, match="ID prefix"):
        merge_rules([], [{"ID": "mine", "Status": "Enabled"}])
    ours = render_rules([LifecycleSpec("", [], 30)], "archive")
    with pytest.raises(LifecycleError, match="duplicate"):
        merge_rules([], ours + ours)


def test_merge_limit_of_1000_rules() -> None:
    foreign = [{"ID": f"f{i}", "Status": "Enabled", "Filter": {"Prefix": f"f{i}/"}} for i in range(MAX_RULES - 1)]
    ours = render_rules([LifecycleSpec("queue=a", [], 3)], "archive")
    assert len(merge_rules(foreign, ours)) == MAX_RULES
    more = render_rules([LifecycleSpec("queue=a", [], 3), LifecycleSpec("queue=b", [], 3)], "archive")
    with pytest.raises(LifecycleError, match="at most 1000"):
        merge_rules(foreign, more)


def test_diff_added_removed_changed_unchanged() -> None:
    current = [FOREIGN, *render_rules([LifecycleSpec("queue=a", [], 3), LifecycleSpec("queue=b", [], 3)], "p")]
    desired = merge_rules(
        current, render_rules([LifecycleSpec("queue=a", [], 10), LifecycleSpec("queue=c", [], 3)], "p")
    )
    diff = diff_rules(current, desired)
    assert [r["ID"] for r in diff.added] == ["tiering:p/queue=c/"]
    assert [r["ID"] for r in diff.removed] == ["tiering:p/queue=b/"]
    assert [(b["ID"], a["Expiration"]["Days"]) for b, a in diff.changed] == [("tiering:p/queue=a/", 10)]
    assert [r["ID"] for r in diff.unchanged] == ["logs"]
    assert diff.has_changes
    text = diff.text()
    assert "+ tiering:p/queue=c/" in text
    assert "- tiering:p/queue=b/" in text
    assert "~ tiering:p/queue=a/" in text
    assert "before: p/queue=a/: expire after 3d" in text
    assert "after:  p/queue=a/: expire after 10d" in text
    assert text.splitlines()[-1] == "1 to add, 1 to remove, 1 to change, 1 unchanged"
    assert diff.to_dict()["changed"][0]["after"]["Expiration"] == {"Days": 10}


def test_diff_ignores_server_formatting() -> None:
    desired = render_rules([LifecycleSpec("", [(30, "STANDARD_IA"), (120, "GLACIER")], 400)], "p")
    # What a server may send back: reordered transitions, empty fields, a legacy top-level Prefix.
    from_server = [
        {
            "Expiration": {"Days": 400},
            "ID": "tiering:p/",
            "Prefix": "p/",
            "Status": "Enabled",
            "Transitions": [{"StorageClass": "GLACIER", "Days": 120}, {"Days": 30, "StorageClass": "STANDARD_IA"}],
            "NoncurrentVersionTransitions": [],
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        }
    ]
    diff = diff_rules(from_server, desired)
    assert not diff.has_changes, diff.text()
    assert diff.text().startswith("lifecycle rules are up to date")
    assert normalize_rule(from_server[0]) == normalize_rule(desired[0])


def test_diff_detects_disabled_rule() -> None:
    desired = render_rules([LifecycleSpec("", [], 30)], "p")
    disabled = [dict(desired[0], Status="Disabled")]
    diff = diff_rules(disabled, desired)
    assert len(diff.changed) == 1
    assert "[Disabled]" in describe_rule(disabled[0])


def test_describe_rule() -> None:
    (rule,) = render_rules([LifecycleSpec("queue=x", [(30, "STANDARD_IA"), (90, "GLACIER")], 365)], "p")
    assert describe_rule(rule) == (
        "p/queue=x/: 30d -> STANDARD_IA, 90d -> GLACIER; expire after 365d; abort incomplete uploads after 7d"
    )


def test_valid_storage_classes_match_the_store() -> None:
    assert VALID_STORAGE_CLASSES == ALL_STORAGE_CLASSES
    assert {"STANDARD", "STANDARD_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"} <= VALID_STORAGE_CLASSES


def test_storage_class_warnings() -> None:
    assert storage_class_warning("STANDARD", 10) is None
    assert storage_class_warning("STANDARD_IA", 64 * 1024 * 1024, days_in_class=60) is None
    small_ia = storage_class_warning("STANDARD_IA", 10 * 1024)
    assert small_ia is not None and "128 KiB" in small_ia and "10 KiB" in small_ia
    short_ia = storage_class_warning("ONEZONE_IA", 10 * 1024 * 1024, days_in_class=7)
    assert short_ia is not None and "30 days" in short_ia and "early-deletion" in short_ia
    gir = storage_class_warning("GLACIER_IR", 1024 * 1024, days_in_class=30)
    assert gir is not None and "90 days" in gir and "128 KiB" not in gir
    glacier = storage_class_warning("GLACIER", 100 * 1024)
    assert glacier is not None and "40 KiB" in glacier
    assert storage_class_warning("GLACIER", 50 * 1024 * 1024, days_in_class=365) is None
    deep = storage_class_warning("DEEP_ARCHIVE", 50 * 1024 * 1024, days_in_class=90)
    assert deep is not None and "180 days" in deep
    it = storage_class_warning("INTELLIGENT_TIERING", 100 * 1024)
    assert it is not None and "never move" in it
    assert storage_class_warning("INTELLIGENT_TIERING", 200 * 1024) is None
    with pytest.raises(LifecycleError, match="unknown storage class"):
        storage_class_warning("FROZEN", 1)


def test_infra_lifecycle_example_is_what_render_and_merge_produce() -> None:
    example = json.loads((Path(__file__).parents[2] / "infra" / "lifecycle-example.json").read_text())["Rules"]
    ours = render_rules(
        [
            LifecycleSpec("", [(30, "STANDARD_IA"), (90, "GLACIER_IR"), (180, "DEEP_ARCHIVE")], 730),
            LifecycleSpec("queue=emails", [], 30),
        ],
        "archive",
    )
    foreign = [r for r in example if not r["ID"].startswith(RULE_ID_PREFIX)]
    assert [r["ID"] for r in foreign] == ["access-logs-expiry"]
    assert not diff_rules(example, merge_rules(example, ours)).has_changes
