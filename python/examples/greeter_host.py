"""A Python host for greeter_plugin.py: start it, negotiate, call Greet, stop it."""

import logging
import sys
from pathlib import Path

import soup

HANDSHAKE = soup.HandshakeConfig(
    cookie_key="GREETER_PLUGIN", cookie_value="hi", app_versions=(1, 2)
)
PLUGIN = [sys.executable, str(Path(__file__).with_name("greeter_plugin.py"))]

logging.basicConfig(level=logging.INFO)  # the plugin's log lines arrive here at their level
config = soup.ClientConfig(cmd=PLUGIN, handshake=HANDSHAKE)
with soup.Client(config) as client:
    # raw bytes both ways, as the plugin's generic handler: no (de)serializer
    greet = client.channel.unary_unary("/greeter.Greeter/Greet", None, None)
    answer = greet(b"Gopher", timeout=5).decode()
    print(f"v{client.protocol_version}: {answer}", flush=True)
