"""What {{name}} does, free of host calls so that it can be tested anywhere."""


def allowed(identity, token):
    """Whether the first identity-source value is `Bearer <token>`."""
    return bool(identity) and identity[0].startswith("Bearer ") and identity[0][7:].strip() == token
