"""The public API of ``models`` is pinned: changing it is a deliberate act."""

import models


def test_public_api():
    assert sorted(models.__all__) == sorted([
        "DETECTORS", "FEATURES", "BankResult", "Calibrator", "Detector", "Finding",
        "ForecastResidual", "HalfSpaceTreesScorer", "LogAnalytics", "LogPatterns", "ModelEngine",
        "METRIC_CLASSES", "ModelError", "ModelRegistry", "ModelVersion", "RobustSeasonal",
        "SeasonalEnsemble",
        "SeriesBank", "ServiceModelState", "ServiceVectorHST", "TemplateMiner",
        "TraceAnalytics", "TraceRED", "metric_category", "score_from_log10p", "tail_log10",
    ])
    for name in models.__all__:
        assert getattr(models, name) is not None


def test_model_errors_are_tocsin_errors():
    from pipeline.errors import TocsinError

    assert issubclass(models.ModelError, TocsinError)
