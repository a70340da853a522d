"""The call's CloudWatch metrics: one EMF blob per call, flushed at once."""

from __future__ import annotations

from switchboard.ledger.record import CallRecord
from switchboard.observability import SERVICE, logger, metrics


def emit_metrics(record: CallRecord) -> None:
    """One EMF blob per call, flushed at once: under the web adapter no handler decorator flushes it."""
    try:
        add_dimensions = getattr(metrics, "add_dimensions", None)
        if add_dimensions is not None and record.provider:
            add_dimensions(service=SERVICE, provider=record.provider, model=record.model or "none")
        metrics.add_metric(name="Calls", unit="Count", value=1)
        metrics.add_metric(name="Errors", unit="Count", value=int(record.is_error))
        if record.ttft_ms is not None:
            metrics.add_metric(name="TTFT", unit="Milliseconds", value=record.ttft_ms)
        if record.total_ms is not None:
            metrics.add_metric(name="Latency", unit="Milliseconds", value=record.total_ms)
        if record.overhead_ms is not None:
            metrics.add_metric(name="GatewayOverhead", unit="Milliseconds", value=record.overhead_ms)
        for name, value in (("PromptTokens", record.prompt_tokens), ("CompletionTokens", record.completion_tokens)):
            if value is not None:
                metrics.add_metric(name=name, unit="Count", value=value)
        if record.cost_usd is not None:
            metrics.add_metric(name="CostUSD", unit="None", value=record.cost_usd)
        metrics.flush_metrics(raise_on_empty_metrics=False)
    except Exception as exc:  # metrics must never break a call
        logger.warning("metrics not emitted", extra={"error_type": type(exc).__name__,
                                                     "request_id": record.request_id})
