"""A raw-socket, threaded, fault-injecting HTTP/1.1 test server for segdl's tests.

It shares no code with ``segdl`` (its range logic is written independently) and uses the
standard library only::

    with FaultServer() as srv:
        srv.add_file("/f.bin", data)
        srv.set_faults("/f.bin", Faults(truncate_after=1000, times=1))
        ...  # download srv.url("/f.bin"), then inspect srv.requests

``FaultServer(ssl_context=...)`` serves HTTPS instead (``base_url`` is then ``https://``);
``relay.TLSRelay`` puts TLS in front of any TCP server, e.g. to make an HTTPS proxy.
"""

from tests.server.core import FaultServer
from tests.server.faults import Faults
from tests.server.records import RequestRecord
from tests.server.resources import AUTO

__all__ = ["AUTO", "FaultServer", "Faults", "RequestRecord"]
