"""The group sums a kept state carries to an account's next order (app/domain/trading/kept.py): what one
written order changes in them, without PostgreSQL. tests/integration/test_placement_group_snapshot.py
checks the same against fresh reads."""

from __future__ import annotations

import uuid
from decimal import Decimal

from app.domain.risk.group_pretrade import Figures
from app.domain.trading.kept import MAX_GROUP_PARTS, GroupState, PlacementCaches, Snapshot
from app.domain.trading.schemas import OrderCreate

D = Decimal
ME, OTHER = uuid.uuid4(), uuid.uuid4()


def _state(*kinds: str, gross="1000", net="-200", held="3", open_orders: str | None = "2") -> GroupState:
    figures = Figures(
        str(uuid.uuid4()), "desk", 7, [(str(uuid.uuid4()), kind, "1e9", None, "80") for kind in kinds],
        gross, net, held, open_orders if "max_open_orders" in kinds else None, None,
    )
    # Both members have open orders: the guard compares both rows.
    parts = {f"a{ME}": "100", f"o{ME}": "", f"a{OTHER}": "101", f"o{OTHER}": "", "iXYZ": "55"}
    return GroupState([figures], parts)


def test_a_fill_re_marks_the_accounts_position_in_the_sums_and_moves_every_version():
    before = _state("max_gross_exposure", "max_open_orders")
    # 3 @ avg 90 -> 5 @ avg 94, marked at the last price 100 (a buy of 2 that filled)
    after = before.after(ME, "200", "ABC", "77", (D(3), D(90)), (D(5), D(94)), D(100), False)
    assert after is not None
    f = after.figures[0]
    assert (f.version, D(f.gross), D(f.net), D(f.held), f.open_orders) == (8, D(1200), D(0), D(5), "2")
    assert after.parts == {f"a{ME}": "200", f"o{ME}": "", f"a{OTHER}": "101", f"o{OTHER}": "", "iXYZ": "55",
                           "iABC": "77"}
    assert after.current_for(ME, "200") and not after.current_for(ME, "100")
    # The guard's rows, carried from the state before, are those of the new parts.
    assert after.rows() == ([str(ME), str(OTHER)], ["200", "101"], ["XYZ", "ABC"], ["55", "77"])
    assert after.rows() == GroupState(after.figures, after.parts).rows()
    assert before.rows() == ([str(ME), str(OTHER)], ["100", "101"], ["XYZ"], ["55"])  # left as it was


def test_a_state_does_not_follow_an_account_its_parts_do_not_name():
    stranger = uuid.uuid4()
    assert _state("max_gross_exposure").after(stranger, "2", "ABC", "7", (D(0), D(0)), None, D(1), True) is None


def test_a_short_position_and_a_never_priced_symbol_count_at_their_absolute_value_and_cost():
    before = _state("max_gross_exposure")
    # short 2 @ 50 -> short 6 @ 50, never priced: marked at cost
    after = before.after(ME, "200", "XYZ", "55", (D(-2), D(50)), (D(-6), D(50)), None, False)
    assert after is not None
    f = after.figures[0]
    assert (D(f.gross), D(f.net), D(f.held)) == (D(1200), D(-400), D(-1))
    assert after.parts["iXYZ"] == "55"


def test_an_order_that_rests_adds_one_open_order_and_moves_no_sum():
    after = _state("max_gross_exposure", "max_open_orders").after(
        ME, "200", "ABC", "77", (D(3), D(90)), None, D(100), True
    )
    assert after is not None
    f = after.figures[0]
    assert (D(f.gross), D(f.net), f.open_orders, f.version) == (D(1000), D(-200), "3", 8)
    assert "iABC" not in after.parts  # no position row was created


def test_sums_no_limit_measures_are_left_as_read():
    after = _state("max_open_orders", gross="0", net="0", held="0").after(
        ME, "200", "ABC", "77", (D(0), D(0)), (D(4), D(100)), D(100), False
    )
    assert after is not None and (after.figures[0].gross, after.figures[0].held) == ("0", "0")


def test_groups_with_a_daily_loss_limit_or_too_many_rows_are_not_kept():
    assert _state("max_daily_loss").after(ME, "2", "ABC", "7", (D(0), D(0)), None, D(1), True) is None
    big = GroupState(_state("max_gross_exposure").figures, {f"a{uuid.uuid4()}": "1" for _ in range(MAX_GROUP_PARTS)})
    assert big.after(ME, "2", "ABC", "7", (D(0), D(0)), None, D(1), True) is None


def test_the_guarded_rows_are_the_parts_split_by_kind_with_their_versions_alongside():
    state = GroupState.of(
        _state("max_gross_exposure").figures, [f"a{ME}:100", "iXYZ:55", f"o{OTHER}", f"a{OTHER}:101", f"o{ME}"]
    )
    assert state is not None
    assert state.rows() == ([str(ME), str(OTHER)], ["100", "101"], ["XYZ"], ["55"])
    assert state.rows() is state.rows()  # computed once per state
    assert state.guarded() == (f"{ME},{OTHER}", "100,101", ["XYZ"], ["55"])


def test_only_members_with_open_orders_are_compared():
    """A member with no open or held order changes only by an order placed on it, which moves the groups'
    versions: its row is not compared (group_pretrade.members_column)."""
    state = GroupState.of(_state("max_gross_exposure").figures, [f"a{ME}:100", f"a{OTHER}:101", f"o{OTHER}"])
    assert state is not None
    assert state.guarded() == (str(OTHER), "101", [], [])
    assert state.current_for(ME, "100")  # still a member as these parts have it


def test_an_uncompared_account_whose_order_rests_is_compared_from_then_on():
    state = GroupState.of(_state("max_gross_exposure").figures, [f"a{ME}:100", f"a{OTHER}:101", f"o{OTHER}"])
    assert state is not None
    filled = state.after(ME, "200", "XYZ", "55", (D(0), D(0)), (D(1), D(100)), D(100), False)
    assert filled is not None and filled.guarded() == (str(OTHER), "101", ["XYZ"], ["55"])
    assert f"o{ME}" not in filled.parts and filled.current_for(ME, "200")
    rested = filled.after(ME, "300", "XYZ", "55", (D(1), D(100)), None, D(100), True)
    assert rested is not None and rested.guarded() == (f"{OTHER},{ME}", "101,300", ["XYZ"], ["55"])
    assert rested.parts[f"o{ME}"] == ""
    derived = GroupState(rested.figures, rested.parts).rows()  # (the same rows, in the parts' order)
    assert sorted(zip(*rested.rows()[:2], strict=True)) == sorted(zip(*derived[:2], strict=True))
    assert rested.rows()[2:] == derived[2:]
    again = rested.after(ME, "400", "XYZ", "55", (D(1), D(100)), None, D(100), True)
    assert again is not None and again.guarded() == (f"{OTHER},{ME}", "101,400", ["XYZ"], ["55"])
    assert filled.guarded() == (str(OTHER), "101", ["XYZ"], ["55"])  # left as it was


def test_caches_keep_one_snapshot_per_account_and_drop_the_open_sell_count_on_request():
    caches = PlacementCaches()
    caches.keep_snapshot(ME, Snapshot("ABC", {"open_sell_quantity": "4"}))
    sell = OrderCreate(symbol="ABC", side="sell", type="market", quantity=D(1))
    assert caches.snapshots[ME].fits(sell)
    caches.forget_open_sells(ME)
    assert not caches.snapshots[ME].fits(sell)
    assert caches.take_snapshot(ME) is not None and caches.take_snapshot(ME) is None
    assert not caches.is_contended(ME)
    caches.mark_contended(ME)
    assert caches.is_contended(ME) and not caches.is_contended(OTHER)
    caches.contended[ME] = 0.0  # expired
    assert not caches.is_contended(ME) and ME not in caches.contended
    caches.mark_grouped(ME, "g")
    assert caches.group_of(ME) == "g" and caches.gate("g") is caches.gate("g")
