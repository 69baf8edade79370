"""Who is calling: passwords, sessions, access tokens, stream tickets."""
