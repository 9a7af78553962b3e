"""``rollout ui``: a read-only web dashboard of one environment.

:mod:`.sources` gathers what the page shows (pools, nodes, rollouts, images)
from the workspace and a read-only journal; :mod:`.views` renders it as HTML;
:mod:`.server` serves it (GET only) on the standard library's
ThreadingHTTPServer, with a token when it listens beyond loopback.
"""
