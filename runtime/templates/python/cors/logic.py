"""What {{name}} does, free of host calls so that it can be tested anywhere."""


def allowed_origin(headers, allowed):
    """The request's `origin` header when it is allowed, else None."""
    origin = next((v for n, v in headers if n == "origin"), None)
    return origin if origin in allowed else None
