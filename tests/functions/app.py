"""Handlers for the end-to-end tests of `type = "lambda"` (tests/e2e/lambda.rs), run by
the real awslambdaric runtime interface client."""

import base64
import json
import os
import sys
import time


def echo(event, context):
    """The event and what the function sees of its context, as a 200 JSON body."""
    seen = {
        "event": event,
        "request_id": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "function": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "env": {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("AWS_", "LAMBDA_", "TABLE", "WEIR_"))
        },
        "pid": os.getpid(),
    }
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(seen),
    }


def hello(event, context):
    """A bare string: a 200 whose body is the string."""
    return "hello"


def plain(event, context):
    """A JSON object without statusCode: the body as it is."""
    return {"message": "hi", "pid": os.getpid()}


def cookies(event, context):
    """Status, headers, cookies and body."""
    return {
        "statusCode": 201,
        "headers": {"x-a": "1", "content-type": "text/plain"},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": "made",
    }


def binary(event, context):
    """Sends the request body back reversed, base64 in both directions."""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(event["body"])
    else:
        body = (event.get("body") or "").encode()
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/octet-stream"},
        "body": base64.b64encode(body[::-1]).decode(),
        "isBase64Encoded": True,
    }


def fail(event, context):
    """An exception: the runtime reports it to /invocation/{id}/error."""
    raise ValueError("boom")


def slow(event, context):
    """Sleeps `?s=` seconds (default 5)."""
    params = event.get("queryStringParameters") or {}
    time.sleep(float(params.get("s", "5")))
    return {"slept": params.get("s", "5"), "pid": os.getpid()}


def crash(event, context):
    """The process exits in the middle of the invocation."""
    sys.stdout.flush()
    os._exit(3)


def shout(event, context):
    """Prints a line with control characters and one far longer than a log line."""
    print("from the handler \x1b[31mred\x1b[0m")
    print("x" * 20000)
    print("after the long line", file=sys.stderr)
    return "printed"


def malformed(event, context):
    """A statusCode that is no status."""
    return {"statusCode": "teapot"}


def raw(event, context):
    """Returns the event unchanged (mapping mode: the mapper's body is the event)."""
    return event
