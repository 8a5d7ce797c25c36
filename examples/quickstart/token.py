"""Prints an HS256 JWT that the quickstart's jwt authorizer accepts (valid one hour)."""
import base64, hashlib, hmac, json, time

SECRET = b"quickstart-secret-change-me"

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

now = int(time.time())
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = b64(json.dumps({"iss": "weir-quickstart", "aud": "quickstart", "sub": "quickstart-user",
                         "iat": now, "exp": now + 3600}).encode())
signature = hmac.new(SECRET, f"{header}.{claims}".encode(), hashlib.sha256).digest()
print(f"{header}.{claims}.{b64(signature)}")
