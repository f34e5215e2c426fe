"""The network: the Transport interface, its urllib3 implementation, proxies, auth, early dial."""
