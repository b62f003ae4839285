"""A Python host for a Go plugin: soup-go's KV plugin (built with hashicorp/go-plugin)."""

import soup
from soup.lab.demopb import kv_pb2, kv_pb2_grpc

config = soup.ClientConfig(cmd=["soup-go", "rpc", "server-start"])
with soup.Client(config) as client:
    kv = kv_pb2_grpc.KVStub(client.channel)
    kv.Put(kv_pb2.PutRequest(key="greeting", value=b"hello from Go"), timeout=5)
    print(kv.Get(kv_pb2.GetRequest(key="greeting"), timeout=5).value.decode())
    print(client.tls.backend, client.tls.server_key)
