"""The app's login check: constant-time, and locked for a while after repeated failures."""

from ui.auth import LimitedLogin


def test_login_locks_after_failures_and_opens_when_they_age_out():
    now = [0.0]
    login = LimitedLogin("me", "secret", max_failures=3, window_s=60, clock=lambda: now[0])
    assert login("me", "secret") and not login("me", "wrong") and not login("you", "secret")
    assert login("me", "secret")  # two failures: not locked yet
    assert not login("", "") and login.locked()
    assert not login("me", "secret")  # locked: even the right password waits
    now[0] = 61.0
    assert not login.locked() and login("me", "secret")
