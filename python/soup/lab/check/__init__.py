"""``soup check``: a go-plugin conformance checker for anyone's plugin or host.

Part of the lab, never imported by the SDK. The checks are data (``checks.toml``);
``plugin_checks`` plays a go-plugin host against a plugin under test, ``host_checks``
hands a host under test the probe plugin of ``probe`` and judges what it did;
``report`` writes the results as JSON, Markdown, HTML and JUnit XML; ``cli`` is the
command line.
"""
