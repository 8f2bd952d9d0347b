"""OAuth 2.0 for SMTP AUTH (XOAUTH2) with MSAL. Imports no Qt, and msal only when a token is needed.

model      OAuthSettings: who signs in, where (tenant, client id, authority) and with what
errors     OAuthError and its subclasses, each one readable sentence with a hint
aadsts     the table turning an authority's error answer into such an error
http       the requests session MSAL talks through (the right CA, no environment surprises)
cache      MSAL's token cache kept in the OS keyring, never in a file
source     TokenSource: one shared, refreshed access token for check and the relay
expiry     warnings ahead of a client secret's, a certificate's or a refresh token's expiry
"""
