"""Verify an X-StepUp-Assertion with PyJWT, independently of stepgate.

usage: verify.py JWKS_FILE TOKEN AUDIENCE ISSUER
Prints the verified claims as JSON; exits non-zero on any failure.
"""
import json
import sys

import jwt


def main() -> int:
    jwks_path, token, audience, issuer = sys.argv[1:5]
    with open(jwks_path, encoding="utf-8") as f:
        jwks = jwt.PyJWKSet.from_dict(json.load(f))
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "stepup+jwt":
        print(f"unexpected typ {header.get('typ')!r}", file=sys.stderr)
        return 1
    key = next((k for k in jwks.keys if k.key_id == header.get("kid")), None)
    if key is None:
        print("kid not in JWKS", file=sys.stderr)
        return 1
    claims = jwt.decode(
        token,
        key=key,
        algorithms=["ES256"],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud", "jti", "sub"]},
    )
    print(json.dumps(claims))
    return 0


if __name__ == "__main__":
    sys.exit(main())
