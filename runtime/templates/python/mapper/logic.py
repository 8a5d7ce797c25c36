"""What {{name}} does, free of host calls so that it can be tested anywhere."""


def greet(headers, greeting=None):
    """The request headers with `x-hello` added."""
    return headers + [("x-hello", greeting if isinstance(greeting, str) else "hello from {{name}}")]
