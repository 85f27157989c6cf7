"""Authentication: passwords, TOTP, browser sessions, JWT access tokens, API keys, revocation state."""
