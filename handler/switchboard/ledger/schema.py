"""The DynamoDB table's shape, in one place: key names, indexes and item keys.

template.yaml declares the same table for AWS; the embedded emulation and the tests create it from
`TABLE_DEFINITION`, and a test checks the two agree.

Access patterns, none of them a scan:
  * calls of a task in a time range, newest first: pk = TASK#<task>, sk = CALL#<time>#<id>
  * calls of a conversation: index by-conversation, gsi1pk = CONV#<conversation-id>
  * all calls of a day, newest first: index by-day, gsi2pk = DAY#<yyyy-mm-dd>
  * one call by request id: index by-request, request_id
  * per-task, per-day, per-model rollups: pk = ROLLUP#<task>, sk = DAY#<day>#<provider/model>[#ENV#<env>];
    all tasks together in pk = ROLLUP#*, with sk = DAY#<day>#<provider/model>#TASK#<task>[#ENV#<env>] and
    DAY#<day>#PROMPT#<version>#TASK#<task>[#ENV#<env>], plus VERSION#<version> (first seen); atomic ADDs
  * budget counters: pk = BUDGET#task#<task> | BUDGET#key#<name>, sk = DAY#<yyyy-mm-dd> | MONTH#<yyyy-mm>
"""

from __future__ import annotations

ALL_TASKS = "*"
TTL_ATTRIBUTE = "expires_at"
CONVERSATION_INDEX = "by-conversation"
DAY_INDEX = "by-day"
REQUEST_INDEX = "by-request"
# TTFT histogram bucket upper bounds in ms; the last bucket is open-ended.
TTFT_BUCKETS_MS = (50, 100, 150, 200, 250, 300, 400, 500, 650, 800, 1000, 1300, 1600, 2000, 3000, 5000, 10000)


def _index(name: str, pk: str, sk: str | None) -> dict:
    schema = [{"AttributeName": pk, "KeyType": "HASH"}]
    if sk:
        schema.append({"AttributeName": sk, "KeyType": "RANGE"})
    return {"IndexName": name, "KeySchema": schema, "Projection": {"ProjectionType": "ALL"}}


TABLE_DEFINITION = {
    "AttributeDefinitions": [{"AttributeName": name, "AttributeType": "S"}
                             for name in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "request_id")],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    "GlobalSecondaryIndexes": [
        _index(CONVERSATION_INDEX, "gsi1pk", "gsi1sk"),
        _index(DAY_INDEX, "gsi2pk", "gsi2sk"),
        _index(REQUEST_INDEX, "request_id", None),
    ],
    "BillingMode": "PAY_PER_REQUEST",
}


def create_table(dynamodb, table_name: str) -> None:
    """Create the table (on-demand, TTL on) unless it exists: the embedded stack and the tests."""
    try:
        dynamodb.create_table(TableName=table_name, **TABLE_DEFINITION)
    except dynamodb.exceptions.ResourceInUseException:
        return
    dynamodb.update_time_to_live(TableName=table_name, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": TTL_ATTRIBUTE})


def task_pk(task_id: str) -> str:
    return f"TASK#{task_id}"


def rollup_pk(task_id: str) -> str:
    return f"ROLLUP#{task_id}"


def call_sk(iso_time: str, request_id: str) -> str:
    return f"CALL#{iso_time}#{request_id}"


def bucket_index(ttft_ms: float) -> int:
    for index, bound in enumerate(TTFT_BUCKETS_MS):
        if ttft_ms <= bound:
            return index
    return len(TTFT_BUCKETS_MS)
