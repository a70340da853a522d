"""The embedded AWS emulation keeps DynamoDB's promise that budgets rely on: a conditional write is atomic.

Budgets reserve with a conditional `ADD` (the line must be under its limit). moto's own threaded server lets
two such writes interleave, so both pass the condition; locally, concurrent calls would then overspend a
budget that they cannot overspend on AWS. Here 24 writers race for 4 places on one counter.
"""

from __future__ import annotations

import threading

import boto3
from botocore.config import Config

PLACES, WRITERS = 4, 24


def test_racing_conditional_adds_never_pass_the_limit(local_aws) -> None:
    db = boto3.client("dynamodb", endpoint_url=local_aws.env()["SWITCHBOARD_AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing",
                      config=Config(max_pool_connections=WRITERS))
    db.create_table(TableName="race", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    admitted: list[int] = []
    barrier = threading.Barrier(WRITERS)

    def writer() -> None:
        barrier.wait()
        try:
            db.update_item(TableName="race", Key={"pk": {"S": "line"}}, UpdateExpression="ADD n :one",
                           ConditionExpression="attribute_not_exists(n) OR n < :places",
                           ExpressionAttributeValues={":one": {"N": "1"}, ":places": {"N": str(PLACES)}})
        except db.exceptions.ConditionalCheckFailedException:
            return
        admitted.append(1)

    for _ in range(10):  # ten rounds: an interleaving is likely in one of them when writes are not serialised
        db.delete_item(TableName="race", Key={"pk": {"S": "line"}})
        admitted.clear()
        threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        final = int(db.get_item(TableName="race", Key={"pk": {"S": "line"}})["Item"]["n"]["N"])
        assert (len(admitted), final) == (PLACES, PLACES)


def test_the_emulation_handles_one_request_at_a_time() -> None:
    """Deterministic beside the race above (which shows itself mostly on a loaded machine)."""
    from switchboard.ops.local_moto import one_at_a_time

    inside, most = [0], [0]
    lock = threading.Lock()

    def slow_app(environ, start_response):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        threading.Event().wait(0.02)
        with lock:
            inside[0] -= 1
        start_response("200 OK", [])
        return [b"ok"]

    app = one_at_a_time(slow_app)
    threads = [threading.Thread(target=app, args=({}, lambda *a: None)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
