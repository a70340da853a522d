"""Gateway and admin keys: who a caller is (auth.py), the gateway-keys secret's entries (records.py), and the
read side of Secrets Manager (secrets.py). Writing the secrets is the CLI's (ops/secrets_admin.py)."""
