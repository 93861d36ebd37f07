"""What tests share: arrange through the API as a client would (support.api, in process;
support.http, over HTTP to a real server), and the secrets both sides use."""

PASSWORD = "correct horse battery staple"
# Shared by the test apps and the gunicorn servers, so tokens made in one work in the other.
JWT_SECRET = "a-test-secret-of-more-than-32-bytes-for-signing-jwts"


def bearer_of(token: str) -> dict[str, str]:
    """The headers that carry a token."""
    return {"Authorization": f"Bearer {token}"}
