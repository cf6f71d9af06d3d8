"""A facilitator's role follows its sign-in: the venue (sans-IO) withdraws it when the shell
says the sign-in session ended or the account changed, refuses tickets and resumes from
them afterwards, and audits each withdrawal."""

from __future__ import annotations

import pytest

from hearth.spaces.effects import Audit, Broadcast, Detach
from hearth.spaces.venue import ROLE_WITHDRAWN
from tests.support.world import World, error_code, reply, wire

ROOMS = ["circle", "other"]


def facilitator(w: World, signin: str | None = "s1", generation: int | None = 3,
                account: str = "ana") -> tuple[object, dict[str, object]]:
    ticket = w.venue.issue_ticket("facilitator", w.clock.seconds(), account, signin=signin,
                                  generation=generation)
    return w.join(ticket=ticket)


def withdrawn(effects: list[object], member: str) -> None:
    detach = [e for e in effects if isinstance(e, Detach)]
    assert [(d.member, d.code) for d in detach] == [(member, ROLE_WITHDRAWN)]
    left = [e for e in effects if isinstance(e, Broadcast) and wire(e.message)["type"] == "member_left"]
    assert [wire(b.message)["member"] for b in left] == [member]
    audit = [e for e in effects if isinstance(e, Audit)]
    assert [(a.actor, a.action) for a in audit] == [("ana", "role_withdrawn")]


def test_signing_out_withdraws_the_role_and_refuses_its_tickets() -> None:
    w = World()
    w.venue.account_changed("ana", ("facilitator", 3), w.clock.seconds(), ROOMS)
    _, welcome = facilitator(w)
    w.join()  # a participant, untouched
    effects = w.venue.signin_ended("s1", w.clock.seconds(), ROOMS)
    withdrawn(effects, str(welcome["member"]))
    assert [a.outcome for a in effects if isinstance(a, Audit)] == ["signed_out"]
    assert welcome["member"] not in w.venue.rooms["circle"].members
    # its token is gone, and a ticket from the same sign-in is refused
    assert error_code(w.send(w.connect(), {"type": "resume", "token": welcome["token"]})) \
        == "session_expired"
    ticket = w.venue.issue_ticket("facilitator", w.clock.seconds(), "ana", signin="s1",
                                  generation=3)
    assert error_code(w.send(w.connect(), {"type": "join", "room": "circle",
                                           "ticket": ticket})) == "forbidden"
    # another sign-in of the same account is fine
    _, again = facilitator(w, signin="s2")
    assert again["type"] == "welcome"


def test_a_changed_or_removed_account_withdraws_the_roles_it_gave() -> None:
    w = World()
    w.venue.account_changed("ana", ("facilitator", 3), w.clock.seconds(), ROOMS)
    _, first = facilitator(w)
    assert w.venue.account_changed("ana", ("facilitator", 3), w.clock.seconds(), ROOMS) == []
    effects = w.venue.account_changed("ana", ("facilitator", 4), w.clock.seconds(), ROOMS)
    withdrawn(effects, str(first["member"]))  # a new password or second factor
    _, second = facilitator(w, signin="s2", generation=4)
    effects = w.venue.account_changed("ana", ("operator", 4), w.clock.seconds(), ROOMS)
    withdrawn(effects, str(second["member"]))  # a new role: sign in again for it
    old_role = w.venue.issue_ticket("facilitator", w.clock.seconds(), "ana", signin="s3",
                                    generation=4)
    assert error_code(w.send(w.connect(), {"type": "join", "room": "circle",
                                           "ticket": old_role})) == "forbidden"
    ticket = w.venue.issue_ticket("operator", w.clock.seconds(), "ana", signin="s4",
                                  generation=4)
    _, op = w.join(ticket=ticket)
    effects = w.venue.account_changed("ana", None, w.clock.seconds(), ROOMS)
    withdrawn(effects, str(op["member"]))
    assert [a.outcome for a in effects if isinstance(a, Audit)] == ["account_removed"]
    ticket = w.venue.issue_ticket("operator", w.clock.seconds(), "ana", signin="s5",
                                  generation=4)
    assert error_code(w.send(w.connect(), {"type": "join", "room": "circle",
                                           "ticket": ticket})) == "forbidden"


def test_participants_and_other_accounts_keep_their_places() -> None:
    w = World()
    _, member = w.join()
    _, bo = facilitator(w, signin="b1", account="bo")
    effects = w.venue.account_changed("ana", None, w.clock.seconds(), ROOMS)
    effects += w.venue.signin_ended("a1", w.clock.seconds(), ROOMS)
    assert effects == []
    assert {member["member"], bo["member"]} <= set(w.venue.rooms["circle"].members)


def test_in_process_tickets_lose_the_role_only_when_the_account_goes() -> None:
    """The drill's tickets have no sign-in: a new generation does not touch them."""
    w = World()
    _, drill = facilitator(w, signin=None, generation=None)
    assert w.venue.account_changed("ana", ("facilitator", 9), w.clock.seconds(), ROOMS) == []
    withdrawn(w.venue.account_changed("ana", None, w.clock.seconds(), ROOMS),
              str(drill["member"]))


def test_only_the_rooms_this_node_runs_are_touched_and_resume_checks_again() -> None:
    """The event reached this node while another ran the room; the room came back here
    later (takeover): the member's resume is refused all the same."""
    w = World()
    conn, welcome = facilitator(w)
    conn.lost(w.clock.seconds())  # type: ignore[attr-defined]
    assert w.venue.signin_ended("s1", w.clock.seconds(), []) == []  # not run here
    effects = w.send(w.connect(), {"type": "resume", "token": welcome["token"]})
    assert error_code(effects) == "forbidden"
    assert "sign in again" in reply(effects, "error")["message"]


def test_a_participant_resume_is_not_checked() -> None:
    w = World()
    conn, welcome = w.join()
    conn.lost(w.clock.seconds())
    w.venue.account_changed("ana", None, w.clock.seconds(), ROOMS)
    resumed = reply(w.send(w.connect(), {"type": "resume", "token": welcome["token"]}), "welcome")
    assert resumed["resumed"] is True


@pytest.mark.parametrize("known", [None, ("facilitator", 3)])
def test_a_ticket_of_an_account_not_heard_of_yet_is_checked_when_it_is(
        known: tuple[str, int] | None) -> None:
    """A node may redeem a ticket before its housekeeping has read a brand-new account;
    when it then hears of the account in another state, the role goes."""
    w = World()
    if known is not None:
        w.venue.account_changed("ana", known, w.clock.seconds(), ROOMS)
    _, welcome = facilitator(w)
    assert welcome["type"] == "welcome"
    effects = w.venue.account_changed("ana", ("facilitator", 7), w.clock.seconds(), ROOMS)
    withdrawn(effects, str(welcome["member"]))


def test_the_binding_moves_with_the_room() -> None:
    w = World()
    _, welcome = facilitator(w)
    state = w.venue.export_room("circle")
    other = World()
    other.venue.import_room("circle", state, other.clock.seconds())
    member = other.venue.rooms["circle"].members[str(welcome["member"])]
    assert (member.signin, member.generation, member.account) == ("s1", 3, "ana")
    withdrawn(other.venue.signin_ended("s1", other.clock.seconds(), ROOMS), member.id)


def test_ended_sign_ins_are_forgotten_once_no_ticket_or_session_could_use_them() -> None:
    w = World()
    w.venue.signin_ended("s1", w.clock.seconds(), ROOMS)
    w.clock.advance(w.venue.config.login.session_max_seconds + 1)
    w.tick()
    assert "s1" not in w.venue._ended_signins
