"""The prefix-grouping planner: pure logic, hand-checked cases and invariants."""

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.llm.embedded import plan_prefix_groups


def check_invariants(seqs, limits, max_rows, groups):
    members = sorted(i for _, m in groups for i in m)
    assert members == list(range(len(seqs)))
    for length, m in groups:
        assert len(m) <= max_rows
        if len(m) == 1:
            assert length == 0
        for i in m:
            assert length <= limits[i]
            assert list(seqs[i][:length]) == list(seqs[m[0]][:length])


def test_two_orders_of_a_judgment_share_up_to_where_they_differ():
    head = [1, 2, 3, 4, 5, 6]
    seqs = [head + [7, 8, 9], [50, 51], head + [9, 8, 7], head[:3] + [40]]
    groups = plan_prefix_groups(seqs, [len(s) - 1 for s in seqs], max_rows=8)
    check_invariants(seqs, [len(s) - 1 for s in seqs], 8, groups)
    # Joining all three head-sharers saves 2*3 = 6 tokens; only the two full-head ones save 1*6 = 6.
    # Ties keep the shorter run, so the two long sharers pair on the 6-token head.
    assert (6, [0, 2]) in groups and (0, [1]) in groups and (0, [3]) in groups


def test_limits_keep_read_positions_out_of_the_prefix():
    seqs = [[1, 2, 3, 4], [1, 2, 3, 4]]
    groups = plan_prefix_groups(seqs, [2, 3], max_rows=4)
    assert groups == [(2, [0, 1])]


def test_max_rows_caps_groups():
    seqs = [[1, 2, 3, k] for k in range(10)]
    groups = plan_prefix_groups(seqs, [3] * 10, max_rows=4)
    check_invariants(seqs, [3] * 10, 4, groups)
    assert sorted(len(m) for _, m in groups) == [2, 4, 4]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=8), min_size=1, max_size=12), st.integers(1, 5))
def test_any_input_is_partitioned_validly(seqs, max_rows):
    limits = [len(s) - 1 for s in seqs]
    check_invariants(seqs, limits, max_rows, plan_prefix_groups(seqs, limits, max_rows))
