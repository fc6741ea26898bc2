"""Python requests with one Session: N sequential calls (keep-alive, HTTP/1.1).

    /usr/bin/python3 bench/python/seq.py URL CA USER PASS N [BODYFILE]

Prints the elapsed seconds.  Each answer's JSON is decoded (r.json()), as
lua-keyfactor decodes it into a table.
"""
import sys
import time

import requests

url, ca, user, password, n = sys.argv[1:6]
n = int(n)
body = open(sys.argv[6], "rb").read() if len(sys.argv) > 6 else None
s = requests.Session()
s.auth = (user, password)
s.verify = ca
# verify= is also passed per request: requests lets REQUESTS_CA_BUNDLE /
# CURL_CA_BUNDLE from the environment override Session.verify.
s.headers.update({
    "Accept": "application/json",
    "Content-Type": "application/json",
    "x-keyfactor-requested-with": "APIClient",
    "x-keyfactor-api-version": "1",
})
t0 = time.monotonic()
for _ in range(n):
    if body is not None:
        r = s.post(url, data=body, verify=ca)
    else:
        r = s.get(url, verify=ca)
    if r.status_code != 200:
        sys.exit("python: HTTP %d" % r.status_code)
    r.json()
print("%.6f" % (time.monotonic() - t0))
