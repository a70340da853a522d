"""One Powertools Logger and one Metrics object for the service, created on first use.

Powertools takes tens of milliseconds to import; creating them lazily keeps that off the cold
start that the Lambda Web Adapter waits for (`/health`), and off the first token.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "switchboard")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "switchboard")
_lock = threading.Lock()


class _Lazy:
    """Builds the real object on first attribute access, once, from any thread."""

    def __init__(self, factory) -> None:
        self._factory = factory
        self._target: Any = None

    def _get(self) -> Any:
        if self._target is None:
            with _lock:
                if self._target is None:
                    self._target = self._factory()
        return self._target

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def warm(self) -> None:
        self._get()


def _make_logger():
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    class Formatter(LambdaPowertoolsFormatter):
        """Powertools' JSON lines. A line about one call carries its whole record already encoded (`to_json`):
        it is put together around that text instead of being walked and encoded again, which cost more than
        the rest of the call's bookkeeping together. The keys are Powertools' own, in its order."""

        def format(self, record: logging.LogRecord) -> str:  # noqa: A003
            encoded = getattr(record, RECORD_JSON, None)
            if encoded is None:
                return super().format(record)
            head = {"level": record.levelname, "location": f"{record.funcName}:{record.lineno}",
                    "message": record.getMessage(), "timestamp": self.formatTime(record), "service": SERVICE}
            head.update((k, v) for k, v in getattr(record, CALL_FIELDS_KEY).items() if v is not None)
            trace = self._get_latest_trace_id()
            if trace:
                head["xray_trace_id"] = trace
            return self.serialize(log=head)[:-1] + ',"call_record":' + encoded + "}"

    return Logger(service=SERVICE, level=os.environ.get("POWERTOOLS_LOG_LEVEL") or os.environ.get("LOG_LEVEL")
                  or "INFO", logger_formatter=Formatter())


def _make_metrics():
    from aws_lambda_powertools import Metrics

    return Metrics(namespace=NAMESPACE, service=SERVICE)


logger: Any = _Lazy(_make_logger)
metrics: Any = _Lazy(_make_metrics)


RECORD_JSON, CALL_FIELDS_KEY = "call_record_json", "call_fields"


def log_record(level: str, message: str, record, **extra: Any) -> None:
    """A log line about one call, carrying its request id, task and conversation, and the full record."""
    fields = {"request_id": record.request_id, "task_id": record.task_id, "conversation_id": record.conversation_id,
              **extra}
    getattr(logger, level)(message, extra={RECORD_JSON: record.to_json(), CALL_FIELDS_KEY: fields})


def call_fields(record) -> dict[str, Any]:
    """The keys every log line about a call carries."""
    return {"request_id": record.request_id, "task_id": record.task_id, "conversation_id": record.conversation_id}


def budget_metric(name: str, fields: dict[str, Any]) -> None:
    """One EMF blob for a budget event (`BudgetSoftThreshold`, `BudgetExceeded`), flushed at once.

    Its only dimension is the service, so one alarm covers every budget; which scope and period crossed
    rides along as properties, and the warning log line beside it says the same in words.
    """
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    try:
        with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=NAMESPACE,
                           default_dimensions={"service": SERVICE}) as metric:
            for key in ("budget_scope", "budget_name", "period", "spent_usd", "limit_usd", "period_ends_at"):
                metric.add_metadata(key=key, value=fields.get(key))
    except Exception as exc:  # metrics must never break a call
        logger.warning("budget metric not emitted", extra={"error_type": type(exc).__name__})
