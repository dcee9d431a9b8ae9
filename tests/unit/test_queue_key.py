"""Queue keys: plain string order is dispatch order, for ids of any digit count."""

import random

import pytest

from coord.queue import QueueKey, format_key, parse_key


def test_key_is_fixed_width_and_round_trips():
    k = format_key(2, 7, 4, 123456)
    assert k == "2_0000000000000000007_4_0000000000000123456"
    assert parse_key(k) == QueueKey(2, 7, 4, 123456)


def test_string_order_is_priority_then_instance_then_task_priority_then_task():
    rng = random.Random(42)
    keys = [
        QueueKey(
            rng.randint(0, 4),
            rng.choice([9, 10, 99, 100, 12345, 10**15]),
            rng.randint(0, 4),
            rng.choice([1, 9, 10, 11, 999, 1000, 10**12, 10**18]),
        )
        for _ in range(2000)
    ]
    by_string = sorted(keys, key=str)
    by_tuple = sorted(
        keys,
        key=lambda k: (
            k.workflow_priority,
            k.workflow_instance_id,
            k.task_priority,
            k.task_instance_id,
        ),
    )
    assert by_string == by_tuple


def test_ids_of_different_digit_counts_sort_numerically():
    assert format_key(0, 9, 0, 1) < format_key(0, 10, 0, 1)
    assert format_key(0, 10, 0, 9) < format_key(0, 10, 0, 10)
    assert format_key(0, 10, 0, 99) < format_key(0, 10, 0, 100)


def test_workflow_priority_beats_instance_id():
    assert format_key(0, 999999, 4, 999999) < format_key(1, 1, 0, 1)


def test_task_priority_beats_task_id_within_an_instance():
    assert format_key(2, 5, 0, 1000) < format_key(2, 5, 1, 1)


def test_instance_id_beats_task_priority():
    assert format_key(2, 5, 4, 1000) < format_key(2, 6, 0, 1)


@pytest.mark.parametrize("bad", ["", "1_2_3", "a_1_1_1", "1_2_3_4_5", "1_-2_3_4"])
def test_parse_rejects_garbage(bad):
    with pytest.raises(ValueError):
        parse_key(bad)


def test_out_of_range_values_are_refused():
    with pytest.raises(ValueError):
        format_key(10, 1, 0, 1)
    with pytest.raises(ValueError):
        format_key(0, 10**19, 0, 1)
    with pytest.raises(ValueError):
        format_key(0, 1, 0, -1)
