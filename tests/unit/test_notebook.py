"""The retraining notebook runs top to bottom on a fresh machine (embedded store)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "retrain_detectors.ipynb"


def test_retrain_notebook_runs(monkeypatch):
    monkeypatch.delenv("TOCSIN_STORE_PATH", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "published version 1" in outputs
    assert "reloaded: True" in outputs
    assert "no feedback in the store" in outputs  # a fresh store: the simulator's labels
    # the backtest replayed the store with the published version pinned
    assert "versions ['builtin-1']" in outputs and "versions ['1']" in outputs
