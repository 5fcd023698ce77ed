"""API tokens with roles: the `tokens` table, `/v1/tokens` and the store behind kit/auth's guard."""
