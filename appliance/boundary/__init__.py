"""Flask glue shared by the API and the UI: transport facts, the edge (authentication,
authorisation, CSRF), the request unit of work, audit capture and security headers."""
