"""Stand-in ESIA signer commands for the tests."""

from __future__ import annotations

import sys

# Signs by echoing its input base64url-encoded: what the gateway sends is readable back.
ECHO_SIGNER = (
    f"{sys.executable} -c "
    '"import sys,base64; sys.stdout.write(base64.urlsafe_b64encode(sys.stdin.buffer.read())'
    '.decode())"'
)
