"""The app's login: constant-time, limited per user name and client address with back-off and an
overall ceiling, the counts in the store (so a restart or a second app does not reset them), and a
stranger's failures never lock out someone else."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import gradio as gr
import httpx
import pytest

import app
from db import Store
from db.logins import LoginLog
from ui.auth import CLIENT_ADDRESS, LimitedLogin, LoginLimits

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Clock:
    def __init__(self):
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def store(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'safecb.db'}")
    yield store
    store.close()


def login_from(login: LimitedLogin, address: str, user: str, password: str) -> bool:
    token = CLIENT_ADDRESS.set(address)
    try:
        return login(user, password)
    finally:
        CLIENT_ADDRESS.reset(token)


def test_a_user_and_address_back_off_exponentially_and_a_success_clears_it(store):
    clock = Clock()
    login = LimitedLogin("alice", "secret", LoginLog(store), LoginLimits(failures_before_backoff=3, first_wait_s=10),
                         clock=clock)
    assert not any(login_from(login, "10.0.0.9", "alice", f"guess{i}") for i in range(3))
    assert login.wait_s("alice", "10.0.0.9") == pytest.approx(10)
    assert not login_from(login, "10.0.0.9", "alice", "secret")  # waiting: the right password is not checked
    clock.advance(10.5)  # that refusal counted as a fourth failure: the wait is now 20 s from it
    assert login.wait_s("alice", "10.0.0.9") == pytest.approx(9.5)
    clock.advance(10)
    assert login_from(login, "10.0.0.9", "alice", "secret")
    assert login.wait_s("alice", "10.0.0.9") == 0  # a success starts the count again


def test_thirty_wrong_logins_lock_out_no_one_else(store):
    login = LimitedLogin("alice", "secret", LoginLog(store), clock=Clock())
    assert not any(login_from(login, "203.0.113.5", "alice", f"guess{i}") for i in range(30))
    assert not any(login_from(login, "203.0.113.5", "mallory", f"guess{i}") for i in range(30))
    assert login_from(login, "198.51.100.7", "alice", "secret")  # the real user, elsewhere
    assert login_from(login, "203.0.113.5", "bob", "x") is False  # another name: wrong, but checked
    assert login.wait_s("alice", "203.0.113.5") > 0


def test_the_counts_survive_a_restart_and_hold_across_apps(store):
    clock = Clock()
    first = LimitedLogin("alice", "secret", LoginLog(store), clock=clock)
    assert not any(login_from(first, "203.0.113.5", "alice", f"guess{i}") for i in range(5))
    restarted = LimitedLogin("alice", "secret", LoginLog(store), clock=clock)
    assert not login_from(restarted, "203.0.113.5", "alice", "secret")
    assert restarted.wait_s("alice", "203.0.113.5") > 0


def test_past_the_overall_ceiling_only_known_addresses_may_try(store):
    clock = Clock()
    login = LimitedLogin("alice", "secret", LoginLog(store), LoginLimits(global_failures_per_hour=20), clock=clock)
    assert login_from(login, "198.51.100.7", "alice", "secret")  # alice's address is known
    for i in range(20):  # a guesser spread over many addresses, under each pair's own limit
        assert not login_from(login, f"203.0.113.{i}", "alice", "guess")
    assert not login_from(login, "192.0.2.1", "alice", "secret")  # a new address waits out the hour
    assert login_from(login, "198.51.100.7", "alice", "secret")
    clock.advance(3601)
    assert login_from(login, "192.0.2.1", "alice", "secret")


def test_a_store_that_cannot_count_refuses_the_login(store, monkeypatch):
    from sqlalchemy.exc import OperationalError

    login = LimitedLogin("alice", "secret", LoginLog(store), clock=Clock())

    def store_away(*args, **kwargs):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(LoginLog, "failures_since_success", store_away)
    assert not login_from(login, "127.0.0.1", "alice", "secret")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_launched_app_limits_logins_by_the_clients_address(store, tmp_path):
    args = app.parse_args(["--auth", "alice:secret", "--port", str(free_port())])
    settings = app.launch_settings(args, tmp_path, store)
    with gr.Blocks() as demo:
        gr.Markdown("hello")
    demo.launch(prevent_thread_lock=True, quiet=True, **settings)
    try:
        url = f"http://127.0.0.1:{args.port}/login"
        with httpx.Client(timeout=10) as client:
            wrong = [client.post(url, data={"username": "mallory", "password": f"g{i}"}) for i in range(30)]
            assert {r.status_code for r in wrong} == {400}
            assert client.post(url, data={"username": "alice", "password": "secret"}).status_code == 200
        rows = LoginLog(store).failures_since_success("mallory", "127.0.0.1", START)
        assert len(rows) == 30  # counted under the address the server saw
    finally:
        demo.close()
