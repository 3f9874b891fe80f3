"""``tocsin notify`` refuses to start without a receiver or with a bad URL, saying why."""

from __future__ import annotations

import pytest

from pipeline.cli.main import main


@pytest.fixture(autouse=True)
def _no_tocsin_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("TOCSIN_"):
            monkeypatch.delenv(key)


def test_notify_without_receivers_names_the_settings(capsys):
    assert main(["notify"]) == 2
    err = capsys.readouterr().err
    assert "tocsin notify: error: nothing to deliver to" in err
    assert "TOCSIN_NOTIFY_ALERTMANAGER_URLS" in err and "TOCSIN_NOTIFY_WEBHOOK_URLS" in err


def test_notify_refuses_a_receiver_that_is_no_url(capsys):
    assert main(["notify", "--alertmanager", "alertmanager:9093"]) == 2
    err = capsys.readouterr().err
    assert "notify.alertmanager_urls" in err and "'alertmanager:9093' is not an http" in err
