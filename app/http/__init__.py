"""The HTTP layer, on top of everything: the ASGI app, webhooks, health and the admin API.
Handlers parse, call one service, and answer; they hold no SQL and change no state."""
