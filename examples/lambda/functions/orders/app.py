"""An orders API as one Lambda handler (HTTP API payload format 2.0).

Orders live in the process's memory: each of the function's processes has its own.
"""

import json
import os

ORDERS = {}


def handler(event, context):
    method = event["requestContext"]["http"]["method"]
    order_id = (event.get("pathParameters") or {}).get("proxy")
    print(f"{method} {event['rawPath']} ({context.aws_request_id})")
    if method == "GET" and order_id is None:
        return {"table": os.environ.get("TABLE"), "orders": sorted(ORDERS)}
    if method == "PUT" and order_id:
        ORDERS[order_id] = json.loads(event.get("body") or "{}")
        return {"statusCode": 201, "body": json.dumps({"id": order_id})}
    if method == "GET" and order_id in ORDERS:
        return ORDERS[order_id]
    return {
        "statusCode": 404,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"message": f"no order {order_id}"}),
    }
