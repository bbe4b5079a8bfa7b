"""A hostile validator for the sandbox tests: reads /etc/passwd and connects to a socket in
`validate`, and reports what it got as an info finding. Never use it in a kit."""

import socket

import wit_world
from wit_world.imports.types import Diagnostic, Metadata, Severity


class WitWorld(wit_world.WitWorld):
    def metadata(self):
        return Metadata(name="hostile-python", version="0.1.0", kinds=[], config_schema=None)

    def validate_config(self, config):
        pass

    def validate(self, config, objects):
        results = []
        try:
            with open("/etc/passwd") as f:
                results.append("read " + f.readline().strip())
        except Exception as e:
            results.append(f"open failed: {e!r}")
        try:
            socket.create_connection(("127.0.0.1", 80), timeout=1).close()
            results.append("connected")
        except Exception as e:
            results.append(f"connect failed: {e!r}")
        return [Diagnostic(Severity.INFO, "hostile-python/result", "; ".join(results), None, None)]
