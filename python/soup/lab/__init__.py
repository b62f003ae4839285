"""The lab around the SDK: the ``soup`` CLI (both roles), the KV and counter demos, the
client test and its evidence, results, benchmarks' plumbing, and ``soup check``.

The SDK (every ``soup.*`` module outside ``soup.lab``) never imports from here
(``python/tests/test_layout.py`` checks it), so a plugin or host built on the SDK loads
none of it.
"""
