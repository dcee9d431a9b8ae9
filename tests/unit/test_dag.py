"""Pure DAG logic: validation messages name the offending tasks; order; ready sets."""

from core import dag


def problems(edges):
    return dag.validate(edges)


def test_valid_diamond_has_no_problems():
    assert problems([("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"])]) == []


def test_empty():
    (p,) = problems([])
    assert p.code == "empty"


def test_duplicate_names_are_named():
    ps = problems([("a", []), ("a", []), ("b", [])])
    assert [p.code for p in ps] == ["duplicate_name"]
    assert ps[0].tasks == ("a",) and "a" in ps[0].message


def test_self_loop_is_named():
    ps = problems([("a", ["a"])])
    assert ps[0].code == "self_loop" and ps[0].tasks == ("a",)


def test_unknown_dependency_names_both_tasks():
    ps = problems([("a", []), ("b", ["a", "ghost"])])
    assert ps[0].code == "unknown_dependency"
    assert set(ps[0].tasks) == {"b", "ghost"}
    assert "ghost" in ps[0].message and "'b'" in ps[0].message


def test_cycle_names_exactly_its_members():
    ps = problems([("x", []), ("a", ["c"]), ("b", ["a"]), ("c", ["b"]), ("d", ["x"])])
    assert ps[0].code == "cycle"
    assert set(ps[0].tasks) == {"a", "b", "c"}
    assert "->" in ps[0].message


def test_long_chain_does_not_recurse():
    n = 20000
    edges = [("t0", [])] + [(f"t{i}", [f"t{i - 1}"]) for i in range(1, n)]
    assert problems(edges) == []
    d = dag.Dag.build(dict(edges))
    assert dag.topological_order(d)[:3] == ["t0", "t1", "t2"]


def test_topological_order_respects_priority_among_ready():
    d = dag.Dag.build({"a": [], "b": [], "c": ["a"]})
    assert dag.topological_order(d, {"a": 4, "b": 0, "c": 0}) == ["b", "a", "c"]


def test_ready_set_given_states():
    d = dag.Dag.build({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    assert dag.ready_tasks(d, [], []) == ["a"]
    assert dag.ready_tasks(d, [], ["a"]) == []
    assert sorted(dag.ready_tasks(d, ["a"], ["a"])) == ["b", "c"]
    assert dag.ready_tasks(d, ["a", "b"], ["a", "b", "c"]) == []
    assert dag.ready_tasks(d, ["a", "b", "c"], ["a", "b", "c"]) == ["d"]


def test_ready_set_with_scope_treats_outside_upstreams_as_done():
    d = dag.Dag.build({"a": [], "b": ["a"], "c": ["b"]})
    assert dag.ready_tasks(d, [], [], scope={"b", "c"}) == ["b"]


def test_ancestors_and_descendants():
    d = dag.Dag.build({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    assert dag.descendants(d, ["b"]) == {"d"}
    assert dag.ancestors(d, ["d"]) == {"a", "b", "c"}
